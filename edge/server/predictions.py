"""The predictions of ``EdgeApp`` (a mixin of ``edge.server.app.EdgeApp``): every route's way from checked
input to the model's dispatcher (``edge.dispatch``) and back, the answer bodies, the counting and the
prediction-log rows (shadow copies go from the dispatcher to its feed).

Predictions run inline on the event loop when the model is fast (a tabular TFLite model answers in
microseconds, far less than a thread hand-off costs), else through the inference thread
(``edge.server.inference``; ``edge.server.lifecycle`` decides at start-up which of the two a server has),
which still predicts on the event loop a call that is alone and cheap (``run``: no other counted request in
flight, not ``heavy``, a call typically under ``ServeConfig.inline_under``), so that a lone client pays
no thread hand-off and ``/healthz`` waits at most one such call. ``fast_one`` is the one-row fast path's
prediction (``edge.server.fastpath``), ``predict_one`` / ``predict_one_async`` the general path's one row,
``predict_rows`` a batch of feature rows, ``predict_inputs`` input tensors (TF Serving, OIP, images).
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from edge.dispatch import Outcome
from edge.inputs import InputError, RowParser, parse_json
from edge.repository import Repository
from edge.rollout import predicted_class
from edge.server.config import ServeConfig
from edge.server.inference import InferenceThread
from edge.server.messages import JSON_TYPE, Answer, Request, json_bytes, json_float, outcome_headers, read_body
from edge.server.served import ServedModel
from edge.server.shadow_worker import ShadowWorker
from edge.telemetry import Telemetry

T = TypeVar("T")


def value(row: np.ndarray) -> Any:
    """One predicted row as the JSON answers write it: a number, or a list of numbers."""
    flat = np.asarray(row, dtype=np.float64).ravel()
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


def class_names(labels: list[str], y: np.ndarray) -> list[str]:
    """The name of each row's predicted class (``edge.rollout.predicted_class``); the manifest's labels are one
    per output column (``edge.manifest`` checks it)."""
    return [labels[int(c)] for c in predicted_class(y)]


def named_outputs(served: ServedModel, outputs: dict[str, Any], row: int) -> dict[str, Any]:
    """Row ``row`` of every output, by the output's name (what a multi-output answer and its log line say)."""
    return {served.output_names[k]: value(outputs[k][row]) for k in served.output_keys}


class Predicting:
    """The prediction methods of ``EdgeApp`` (see the module's docstring)."""

    repo: Repository
    config: ServeConfig
    telemetry: Telemetry
    shadows: ShadowWorker
    logs: Any
    name: str
    default: ServedModel
    rows: Optional[RowParser]
    _executor: Optional[InferenceThread]

    async def run(self, fn: Callable[..., T], *args: Any, heavy: bool = False) -> T:
        """``fn(*args)``, a model call: inline, or through the inference thread (see the module's docstring);
        ``heavy`` (a batch, or a big picture to decode first) always goes to the thread when there is one.

        Raises:
            Whatever ``fn`` raises.
        """
        thread = self._executor
        if thread is None:
            return fn(*args)
        return await thread.run(fn, *args, alone=self._alone, heavy=heavy)

    def _alone(self) -> bool:
        """No counted request in flight but the one asking (``Telemetry.inflight``)."""
        return self.telemetry.inflight <= 1

    def log_outcome(self, log_rows: Optional[list[list[Any]]], x: Any, answers: list[Any], outcome: Outcome,
                    served: ServedModel) -> None:
        """Add one prediction-log row per answered row (``--log-dir`` only)."""
        if log_rows is None or self.logs is None:
            return
        version = self.repo.models[served.name].versions.get(outcome.version)
        p = version.predictor if version is not None and version.predictor is not None else served.reference
        outputs = outcome.outputs
        if len(served.output_keys) > 1 and isinstance(outputs, dict):  # every output by name, as the answer gives them
            answers = [named_outputs(served, outputs, i) for i in range(len(answers))]
        for row, answer, pid in zip(x, answers, outcome.ids):
            cells = [*[float(v) for v in row]] if served.features else [json.dumps(np.asarray(row).tolist())]
            log_rows.append([*cells, json.dumps(answer), p.variant, p.sha256, pid, outcome.version,
                             "true" if outcome.fallback else ""])

    def predict_one(self, row: list[float], log_rows: Optional[list[list[Any]]], key: Optional[str] = None,
                    served: Optional[ServedModel] = None) -> tuple[bytes, Outcome]:
        """One checked row -> (the ``/predict_json`` answer body, the outcome), predicted inline through the
        model's dispatcher; the row counted as a batch is (queued).

        Raises:
            NotServed, DispatchError: no version could answer (404/503, 422/500).
        """
        served = served or self.default
        if served.one_value:
            outcome = served.dispatcher.predict_value(row, key=key)
        else:
            outcome = served.dispatcher.predict(served.reference.rows_to_inputs([row]), key=key)
        return self.one_body(row, outcome, log_rows, served), outcome

    def fast_one(self, row: list[float], key: Optional[str]) -> tuple[bytes, bytes, Outcome]:
        """The fast path's one row: ``(body, prediction id, outcome)`` through the default model's dispatcher,
        the row queued for counting (``predict_one`` in the fewest steps for a one-value answer).

        Raises:
            NotServed, DispatchError: no version could answer.
        """
        served = self.default
        if not served.one_value:
            body, outcome = self.predict_one(row, None, key, served)
            return body, outcome.ids[0].encode(), outcome
        outcome = served.dispatcher.predict_value(row, None, None, key)
        pid = outcome.ids[0].encode()
        if outcome.fallback:
            return self.one_body(row, outcome, None, served), pid, outcome
        body = b'{"prediction":%s,"success":true,"model_version":%d,"id":"%s"}' % (
            json_float(outcome.outputs), outcome.version, pid)  # what json_bytes would write
        self.telemetry.queue_row(row)
        return body, pid, outcome

    async def predict_one_async(self, row: list[float], log_rows: Optional[list[list[Any]]], key: Optional[str],
                                served: ServedModel) -> tuple[bytes, Outcome]:
        """``predict_one`` inline or on the inference thread (``run``)."""
        d = served.dispatcher
        if served.one_value:
            outcome = await self.run(lambda: d.predict_value(row, key=key))
        else:
            inputs = served.reference.rows_to_inputs([row])
            outcome = await self.run(lambda: d.predict(inputs, key=key))
        return self.one_body(row, outcome, log_rows, served), outcome

    def one_body(self, row: list[float], outcome: Outcome, log_rows: Optional[list[list[Any]]],
                 served: ServedModel) -> bytes:
        """The answer body of one row's outcome; the row counted (queued) and logged."""
        v = outcome.outputs
        if isinstance(v, float):
            answer: Any = v
            text = json_float(v)
        else:
            answer = value(v[served.output_keys[0]][0])
            text = json_bytes(answer)
        if outcome.fallback or len(served.output_keys) > 1 or served.labels:
            tail = b',"fallback":true,"fallback_reason":' + json_bytes(outcome.reason) if outcome.fallback else b""
            if len(served.output_keys) > 1:  # every output by name; "prediction" stays the first one's
                tail += b',"outputs":' + json_bytes(named_outputs(served, v, 0))
            if served.labels and not isinstance(v, float):  # the predicted class by its name
                tail += b',"label":' + json_bytes(class_names(served.labels, v[served.output_keys[0]][:1])[0])
            body = b'{"prediction":%s,"success":true,"model_version":%d,"id":"%s"%s}' % (
                text, outcome.version, outcome.ids[0].encode(), tail)
        else:  # what json_bytes would write
            body = b'{"prediction":%s,"success":true,"model_version":%d,"id":"%s"}' % (
                text, outcome.version, outcome.ids[0].encode())
        self.telemetry.queue_row(row)
        if log_rows is not None and self.logs is not None:
            self.log_outcome(log_rows, [row], [answer], outcome, served)
        return body

    async def predict_rows(self, x: np.ndarray, log_rows: list[list[Any]], key: Optional[str] = None,
                           served: Optional[ServedModel] = None) -> tuple[np.ndarray, Outcome]:
        """Predict checked feature rows through the dispatcher; count them and add their log rows.

        Raises:
            NotServed, DispatchError: no version could answer.
        """
        served = served or self.default
        inputs = served.reference.rows_to_inputs(x)
        d = served.dispatcher
        outcome = await self.run(lambda: d.predict(inputs, key=key), heavy=len(x) > 1)
        y = np.asarray(outcome.outputs[served.output_keys[0]], dtype=np.float64)
        self.telemetry.count_rows(x)
        self.log_outcome(log_rows, x, [value(r) for r in y], outcome, served)
        return y, outcome

    async def predict_inputs(self, inputs: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]],
                             log_rows: list[list[Any]], served: ServedModel,
                             version: Optional[int] = None, label: Optional[str] = None,
                             key: Optional[str] = None, heavy: bool = False) -> tuple[dict[str, np.ndarray], Outcome]:
        """Predict checked input tensors (TF Serving's, OIP's) through the dispatcher; count and log them.
        ``inputs`` may be a function that makes them (an image's decoding): it runs in the same ``run`` call
        (``heavy``: more than one prediction's work, e.g. a batch or a big picture, so never on the event loop;
        a batch of tensors is heavy whatever the caller says).

        Raises:
            NotServed, DispatchError: no version could answer; EdgeError: inputs the model refuses.
        """
        d = served.dispatcher
        made: list[dict[str, np.ndarray]] = []  # edge.server.images: inputs made where the prediction runs

        def job() -> Outcome:
            made.append(inputs() if callable(inputs) else inputs)
            return d.predict(made[0], version=version, label=label, key=key)

        if not callable(inputs):
            heavy = heavy or any(np.ndim(a) and np.shape(a)[0] > 1 for a in inputs.values())  # a batch
        outcome = await self.run(job, heavy=heavy)
        inputs = made[0]
        outputs = outcome.outputs
        if served.features and served is self.default:
            x = np.stack([inputs[f["input"]][:, f["index"]] for f in served.features], axis=1)
            self.telemetry.count_rows(x)
        else:
            x = next(iter(inputs.values()))
            self.telemetry.count_predictions(x.shape[0])
        if log_rows is not None and self.logs is not None:
            if served.features:
                x = np.stack([inputs[f["input"]][:, f["index"]] for f in served.features], axis=1)
            first = np.asarray(outputs[served.output_keys[0]], dtype=np.float64)
            self.log_outcome(log_rows, x, [value(r) for r in first], outcome, served)
        return outputs, outcome

    def sticky_key(self, request: Request, served: ServedModel) -> Optional[str]:
        """The canary's sticky client key (the configured header), if the request carries one."""
        raw = request.headers.get(served.dispatcher.config.sticky_header.encode("latin-1"))
        return raw.decode("latin-1") if raw is not None else None

    async def predict_json(self, request: Request) -> Answer:
        """Raises: InputError: as ``RowParser``; Reply: as ``read_body``; NotServed, DispatchError."""
        data = parse_json(await read_body(request, (JSON_TYPE,), self.config.max_body))
        if self.rows is None:
            raise InputError(422, f"this model has no tabular features; POST to /v1/models/{self.name}:predict")
        served = self.default
        key = self.sticky_key(request, served)
        row = self.rows.quick_row(data)
        if row is not None:  # one row: as the fast path answers it
            failed = request.scope.pop("edge.failed", None)
            if failed is not None:  # the fast path's dispatcher refused it already
                raise failed
            body, outcome = await self.predict_one_async(row, request.log_rows, key, served)
            return 200, JSON_TYPE, body, outcome_headers(outcome)
        x, single = self.rows.payload(data)
        y, outcome = await self.predict_rows(x, request.log_rows, key)
        extra = outcome_headers(outcome)
        tail: dict[str, Any] = {"model_version": outcome.version}
        if outcome.fallback:
            tail.update(fallback=True, fallback_reason=outcome.reason)
        outs = outcome.outputs
        if len(served.output_keys) > 1:  # every output by name, row by row as "prediction(s)"
            tail["outputs"] = (named_outputs(served, outs, 0) if single else
                               {served.output_names[k]: [value(r) for r in outs[k]] for k in served.output_keys})
        if served.labels:  # each row's predicted class by its name
            names = class_names(served.labels, outs[served.output_keys[0]])
            tail.update({"label": names[0]} if single else {"labels": names})
        if single:
            return 200, JSON_TYPE, json_bytes({"prediction": value(y[0]), "success": True, **tail,
                                               "id": outcome.ids[0]}), extra
        return 200, JSON_TYPE, json_bytes({"predictions": [value(r) for r in y], "success": True, **tail,
                                           "ids": outcome.ids}), extra
