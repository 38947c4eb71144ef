"""``EdgeApp``: the ASGI app around one ``Predictor``, and ``build_app`` / ``app_from_env`` that make it.

The app is three layers, outermost first: the one-row fast path (``edge.server.fastpath``), CORS
(``edge.server.cors``), and this module's ``_http``, which matches the route (``edge.server.routing``,
the table is ``routes`` below), checks the method, the concurrency limit and readiness, calls the
handler, turns any exception into a JSON error answer (no input raises out of the app), writes the log
lines before the answer leaves, and counts the request (``edge.telemetry``). The course's, health and
metrics handlers live here; TF Serving's in ``edge.server.tfserving``, the pages in ``edge.server.forms``.

Predictions run inline on the event loop when the model is fast: a tabular TFLite model answers in
microseconds, far less than a thread hand-off costs. At start-up, after the self-test, one prediction of
a batch of one is timed (the median of ``TIMED_RUNS``); when it takes longer than
``ServeConfig.offload_after`` (an image model), every prediction runs on the app's own worker thread
(one thread, so one interpreter, ``Predictor`` keeps one per thread), and the event loop stays free:
``/healthz`` and ``/metrics`` answer while the interpreter is busy. The counting stays on the event loop.
Each worker process has its own interpreter.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import os
import signal
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from edge import __version__
from edge.dispatch import DispatchError, Outcome
from edge.errors import EdgeError
from edge.inputs import InputError, parse_json
from edge.logs import CsvLogs
from edge.repository import NotServed, Repository, State
from edge.rollout_metrics import RolloutCollector
from edge.runner import Predictor
from edge.server.config import CONFIG_ENV, ServeConfig, limits
from edge.server.cors import CORSMiddleware
from edge.server.fastpath import OneRowPath
from edge.server.forms import Forms
from edge.server.images import Images
from edge.server.messages import (JSON_TYPE, HTML_TYPE, Answer, Receive, Reply, Request, Send, error_body,
                                  json_bytes, json_float, outcome_headers, read_body)
from edge.server.openapi import openapi
from edge.server.routing import Route, Router
from edge.server.feedback import Feedback
from edge.server.oip import OpenInference
from edge.server.served import ServedModel, open_repository
from edge.server.tfserving import CONVERTERS, TFServing
from edge.telemetry import Telemetry

T = TypeVar("T")
GET = ("GET", "HEAD")
POST = ("POST",)
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def routes(app: "EdgeApp") -> list[Route]:
    """The route table: every path the server answers, its methods and its handler."""
    tfs, forms, v2, feedback = app.tfs, app.forms, app.oip, app.feedback
    return [
        Route(POST, "/predict_json", app.predict_json, "predict_json", predicts=True),
        Route(GET, "/form", forms.form, "form"),
        Route(POST, "/predict_form", forms.predict_form, "predict_form", predicts=True, error_page=forms.error_page),
        Route(GET, "/healthz", app.healthz, "healthz", limited=False),
        Route(GET, "/readyz", app.readyz, "readyz", limited=False),
        Route(GET, "/metrics", app.metrics, "metrics", limited=False),
        Route(GET, "/drift", app.drift, "drift"),
        Route(GET, "/openapi.json", app.openapi, "openapi"),
        Route(GET, "/", app.index, "index"),
        Route(GET, "/feedback", feedback.metrics, "feedback_metrics"),
        Route(GET, "/v1/repository", feedback.repository, "repository"),
        # TF Serving; the order matters: a path ending in :predict is a predict whatever comes before
        Route(POST, "/v1/models/{model:tfs_model}:predict", tfs.predict, "tfs_predict", predicts=True),
        Route(POST, "/v1/models/{model:tfs_model}:classify", app.images.classify, "classify", predicts=True),
        Route(POST, "/v1/models/{model:tfs_model}/feedback", feedback.feedback, "feedback"),
        Route(GET, "/v1/models/{model:tfs_model}/metadata", tfs.metadata, "tfs_metadata"),
        Route(GET, "/v1/models/{model:tfs_status}", tfs.status, "tfs_status"),
        # the Open Inference Protocol v2 (edge.server.oip)
        Route(GET, "/v2", v2.server, "oip_server"),
        Route(GET, "/v2/health/live", v2.live, "oip_live", limited=False),
        Route(GET, "/v2/health/ready", v2.ready, "oip_ready", limited=False),
        Route(GET, "/v2/models/{name}", v2.metadata, "oip_metadata"),
        Route(GET, "/v2/models/{name}/versions/{version}", v2.metadata, "oip_metadata"),
        Route(GET, "/v2/models/{name}/ready", v2.model_ready, "oip_model_ready", limited=False),
        Route(GET, "/v2/models/{name}/versions/{version}/ready", v2.model_ready, "oip_model_ready", limited=False),
        Route(POST, "/v2/models/{name}/infer", v2.infer, "oip_infer"),
        Route(POST, "/v2/models/{name}/versions/{version}/infer", v2.infer, "oip_infer"),
    ]


def value(row: np.ndarray) -> Any:
    """One predicted row as the JSON answers write it: a number, or a list of numbers."""
    flat = np.asarray(row, dtype=np.float64).ravel()
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


class EdgeApp:
    """The ASGI app over a model repository (see the module's docstring).

    Args:
        repo: the scanned repository (``edge.repository``); a single bundle folder is one model, version 1.
        config: the serve config.
        logs: the CSV logs (``--log-dir``), or None.
        model: the model the legacy routes (``/predict_json``, the form) answer with; by default the only one.

    Raises:
        EdgeError: ``model`` is not served, or the repository serves several models and none is named.
        NotServed: the default model has no loaded version (its interface is unknown).
    """

    TALLY_EVERY = Telemetry.TALLY_EVERY
    TIMED_RUNS = 5
    value = staticmethod(value)

    def __init__(self, repo: Repository, config: ServeConfig, logs: Optional[CsvLogs] = None,
                 model: Optional[str] = None) -> None:
        self.repo = repo
        self.config = config
        self.logs = logs
        names = sorted(repo.models)
        if model is None:
            if len(names) != 1:
                raise EdgeError(f"the repository {str(repo.root)!r} serves {len(names)} models "
                                f"({', '.join(names) or 'none'}); name the one /predict_json answers with --model")
            model = names[0]
        if model not in repo.models:
            raise EdgeError(f"--model {model!r} is not in the repository; it serves {', '.join(names) or 'no model'}")
        self.name = model
        self._served: dict[str, ServedModel] = {}
        self.default = self.served(model)
        self.dispatcher = self.default.dispatcher
        self.features = self.default.features
        self.feature_names = self.default.feature_names
        self.rows = self.default.rows
        self.telemetry = Telemetry(self.features, config.drift_window, config.shared_dir,
                                   log_errors=lambda: logs.errors if logs is not None else 0)
        self.ready = False
        self.ready_error = "self-test has not run"
        self.predict_seconds: Optional[float] = None  # one prediction, timed at start-up
        self.inline = False  # ready, and predictions run on the event loop (the fast path may answer)
        self._executor: Optional[ThreadPoolExecutor] = None  # the inference thread, when not inline
        self._openapi: Optional[bytes] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._scan_task: Optional[asyncio.Task] = None
        self._scan_timer: Optional[asyncio.TimerHandle] = None
        self.tfs = TFServing(self)
        self.oip = OpenInference(self)
        self.feedback = Feedback(self)
        self.forms = Forms(self)
        self.images = Images(self)
        self.router = Router(routes(self), CONVERTERS)
        self._asgi = OneRowPath(self, CORSMiddleware(self._http, config.allow_origins, self.router, self._record))

    # ------------------------------------------------------------------ models

    def served(self, name: str) -> ServedModel:
        """A model of the repository, by name.

        Raises:
            NotServed: 404 for an unknown model, 503 for one with no loaded version yet.
        """
        found = self._served.get(name)
        if found is None:
            found = self._served[name] = ServedModel(self.repo, name, self.config.max_batch, log=self._event)
        return found

    @property
    def p(self) -> Predictor:
        """The predictor the default model's default route answers with now (its stable version)."""
        return self.default.current()

    @property
    def info(self) -> dict[str, Any]:
        """What ``/readyz``, ``/`` and ``/metrics`` say about the model the legacy routes answer with."""
        p = self.p
        return {"model": self.name, "variant": p.variant, "sha256": p.sha256,
                "runtime": p.runtime.describe(), "artifact": p.artifact["path"]}

    def _event(self, line: str) -> None:
        """A rollout event (a rollback, a scan's change) on stderr, one line."""
        print(line if line.startswith("deploykit-edge: ") else f"deploykit-edge: {line}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ lifecycle

    def startup(self) -> None:
        """Work out readiness (the versions were loaded and self-tested by the scan); time one prediction
        to decide whether predictions run inline or on the inference thread."""
        self.update_ready()
        if not self.ready and not self.config.serve_unready:
            return
        self.predict_seconds = self._time_one_prediction()
        if (self.predict_seconds > self.config.offload_after or self.images.offloads()) and self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploykit-edge-inference")
            self._executor.submit(self._time_one_prediction).result()  # loads the thread's own interpreter
        self.inline = self.ready and self._executor is None

    def update_ready(self) -> None:
        """Ready when every model has an AVAILABLE version (and, for a single bundle, its self-test passed)."""
        errors = []
        for name, model in sorted(self.repo.models.items()):
            try:
                version = self.repo.resolve(name)
                self.served(name)  # its dispatcher counts from now on (/metrics)
            except NotServed as exc:
                errors.append(str(exc))
                continue
            result = version.selftest or {}
            if not result.get("passed", True):
                errors.append(result.get("error") or "self-test failed: " + "; ".join(result.get("failures", [])))
        self.ready = not errors
        self.ready_error = "; ".join(errors)
        self.inline = self.ready and self._executor is None and self.predict_seconds is not None

    def failed_versions(self) -> list[dict[str, Any]]:
        """Versions whose load failed (END with an error), for ``/readyz``."""
        return [{"model": name, "version": n, "error": v.error}
                for name, model in sorted(self.repo.models.items())
                for n, v in sorted(model.versions.items()) if v.state is State.END and v.error]

    def _time_one_prediction(self) -> float:
        """The median time of one prediction of a batch of one (zeros; the self-test has checked the model);
        0 when the model refuses zeros (then predictions stay inline, as before this was measured)."""
        p = self.p
        inputs = {s["name"]: np.zeros([1] + [1 if d is None else int(d) for d in s["shape"][1:]], dtype=s["dtype"])
                  for s in p.manifest["inputs"]}
        times = []
        try:
            for _ in range(self.TIMED_RUNS):
                t = time.perf_counter()
                p.predict(inputs)
                times.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001 - a start-up measurement, never a reason not to start
            return 0.0
        return statistics.median(times)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a model call: inline, or on the inference thread (see the module's docstring)."""
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def after_answer(self, outcome: Outcome, served: Optional[ServedModel] = None) -> None:
        """Run an outcome's shadow job off the request's path: on the inference thread when predictions are
        offloaded, else on the event loop once the answer is sent; its disagreement goes to the shadow log."""
        job = outcome.shadow
        if job is None:
            return
        dispatcher = (served or self.default).dispatcher

        def shadow() -> None:
            d = job()
            if d is not None and self.logs is not None:
                self.logs.shadow([_now(), outcome.ids[0] if len(outcome.ids) == 1 else " ".join(outcome.ids),
                                  outcome.version, dispatcher.shadow_stats.version, d.absolute, d.relative,
                                  "" if d.top1 is None else d.top1])

        if self._executor is not None:
            self._executor.submit(shadow)
        else:
            (self._loop or asyncio.get_event_loop()).call_soon(shadow)

    # ------------------------------------------------------------------ scanning

    def _schedule_scan(self) -> None:
        loop = self._loop
        if loop is None or self.repo.single:
            return
        self._scan_timer = loop.call_later(max(0.05, self.repo.config.poll_seconds), self.scan_soon)

    def scan_soon(self) -> None:
        """Start a scan of the repository now (the poll timer and SIGHUP call this); one at a time."""
        if self._loop is None or (self._scan_task is not None and not self._scan_task.done()):
            return
        if self._scan_timer is not None:
            self._scan_timer.cancel()
        self._scan_task = self._loop.create_task(self._scan())

    async def _scan(self) -> None:
        try:
            changes = await asyncio.to_thread(self.repo.scan)
        except Exception as exc:  # noqa: BLE001 - a failed scan keeps what is served; the next one retries
            changes = [f"the repository scan failed: {type(exc).__name__}: {exc}"]
        for line in changes:
            self._event(line)
        was_ready = self.ready
        self.update_ready()
        if self.ready and not was_ready and self.predict_seconds is None:
            self.startup()
        self._schedule_scan()

    def shutdown(self) -> None:
        """Close the logs (fsync) and say on stderr what was written and what, if anything, was lost."""
        if self._scan_timer is not None:
            self._scan_timer.cancel()
        self.telemetry.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self.logs is not None:
            self.logs.close()
            print(f"deploykit-edge: {self.logs.summary()}", file=sys.stderr, flush=True)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._asgi(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.startup()
                    loop = self._loop = asyncio.get_running_loop()
                    self.telemetry.start(loop)
                    if not self.repo.single:
                        self._schedule_scan()
                        try:
                            loop.add_signal_handler(signal.SIGHUP, self.scan_soon)
                        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
                            pass  # not the main thread (tests), or no SIGHUP here: polling still runs
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ------------------------------------------------------------------ the general path

    async def _http(self, scope: dict, receive: Receive, send: Send) -> None:
        start = scope.get("edge.start") or time.perf_counter()
        method = scope["method"]
        path = scope["path"]
        match = self.router.match(path)
        route = match.route if match is not None else None
        request = Request(scope, receive, dict(scope["headers"]), match.params if match is not None else {})
        request_id = uuid.uuid4().hex[:12] if self.logs is not None else ""
        status = 500
        error = ""
        counted = False
        logged = self.logs is None
        try:
            try:
                if route is None:
                    raise Reply(404, f"no route {path}; see /openapi.json")
                if method not in route.methods:
                    allow = ", ".join(route.methods)
                    raise Reply(405, f"method {method} is not allowed on {path}; use {allow}",
                                [(b"allow", allow.encode())])
                if route.limited:
                    limit = self.config.max_concurrency
                    if not self.telemetry.admit(limit):
                        raise Reply(503, f"busy: {limit} requests in flight; retry shortly", [(b"retry-after", b"1")])
                    counted = True
                if route.predicts and not self.ready and not self.config.serve_unready and self.repo.single:
                    raise Reply(503, f"not ready ({self.ready_error}): predictions are refused until the self-test "
                                     "passes (see /readyz); start with --serve-unready to answer anyway")
                status, content_type, body, extra = await route.handler(request)
            except Reply as reply:
                status, error = reply.status, str(reply)
                content_type, body, extra = JSON_TYPE, error_body(error), reply.headers
            except (InputError, NotServed, DispatchError) as exc:
                status, error = exc.status, str(exc)
                content_type, body, extra = JSON_TYPE, error_body(error), []
            except Exception as exc:  # noqa: BLE001 - no input may kill the server
                status, error = 500, f"internal error: {type(exc).__name__}: {exc}"
                content_type, body, extra = JSON_TYPE, error_body(error), []
            if route is not None and route.error_page is not None and status >= 400 and content_type == JSON_TYPE:
                content_type, body = HTML_TYPE, route.error_page(error)
            response_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()), *extra]
            if not logged:  # before the answer leaves: a client holding a 200 has its line in the log
                logged = True
                self._log(scope, request_id, status, error, time.perf_counter() - start, request.log_rows)
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
            for outcome, served in request.after:
                self.after_answer(outcome, served)
        finally:
            if counted:
                self.telemetry.leave()
            elapsed = time.perf_counter() - start
            self.telemetry.observe(route.name if route is not None else "unknown", status, elapsed)
            if not logged:
                self._log(scope, request_id, status, error, elapsed, request.log_rows)

    def _record(self, scope: dict, route: str, status: int, start: float) -> None:
        """Count and log an answer made outside ``_http`` (a CORS preflight)."""
        elapsed = time.perf_counter() - start
        self.telemetry.observe(route, status, elapsed)
        if self.logs is not None:
            self._log(scope, uuid.uuid4().hex[:12], status, "", elapsed, [])

    def _log(self, scope: dict, request_id: str, status: int, error: str, elapsed: float,
             log_rows: list[list[Any]]) -> None:
        """The request's line and its predictions' lines (each written to the OS before this returns).
        A log row is ``[*inputs, prediction, variant, sha256, prediction id, version, fallback]``."""
        logs = self.logs
        assert logs is not None
        now = _now()
        client = scope.get("client")
        client_text = f"{client[0]}:{client[1]}" if client else ""
        latency_ms = round(elapsed * 1000, 3)
        for cells in log_rows:
            logs.prediction([now, request_id, client_text, *cells[:-3], latency_ms, *cells[-3:]])
        logs.request([now, request_id, client_text, scope["method"], scope["path"][:200], status, latency_ms, error[:300]])

    # ------------------------------------------------------------------ predictions

    def log_outcome(self, log_rows: Optional[list[list[Any]]], x: Any, answers: list[Any], outcome: Outcome,
                    served: ServedModel) -> None:
        """Add one prediction-log row per answered row (``--log-dir`` only)."""
        if log_rows is None or self.logs is None:
            return
        version = self.repo.models[served.name].versions.get(outcome.version)
        p = version.predictor if version is not None and version.predictor is not None else served.reference
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
        if outcome.fallback:
            tail = b',"fallback":true,"fallback_reason":' + json_bytes(outcome.reason)
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
        outcome = await self.run(lambda: d.predict(inputs, key=key))
        y = np.asarray(outcome.outputs[served.output_keys[0]], dtype=np.float64)
        self.telemetry.count_rows(x)
        self.log_outcome(log_rows, x, [value(r) for r in y], outcome, served)
        return y, outcome

    async def predict_inputs(self, inputs: dict[str, np.ndarray] | Callable[[], dict[str, np.ndarray]],
                             log_rows: list[list[Any]], served: ServedModel,
                             version: Optional[int] = None, label: Optional[str] = None,
                             key: Optional[str] = None) -> tuple[dict[str, np.ndarray], Outcome]:
        """Predict checked input tensors (TF Serving's, OIP's) through the dispatcher; count and log them.
        ``inputs`` may be a function that makes them (an image's decoding): it runs in the same ``run`` call.

        Raises:
            NotServed, DispatchError: no version could answer; EdgeError: inputs the model refuses.
        """
        d = served.dispatcher
        made: list[dict[str, np.ndarray]] = []  # edge.server.images: inputs made where the prediction runs

        def job() -> Outcome:
            made.append(inputs() if callable(inputs) else inputs)
            return d.predict(made[0], version=version, label=label, key=key)

        outcome = await self.run(job)
        inputs = made[0]
        outputs = outcome.outputs
        first = np.asarray(outputs[served.output_keys[0]], dtype=np.float64)
        if served.features and served is self.default:
            x = np.stack([inputs[f["input"]][:, f["index"]] for f in served.features], axis=1)
            self.telemetry.count_rows(x)
        else:
            x = next(iter(inputs.values()))
            self.telemetry.count_predictions(x.shape[0])
        if log_rows is not None and self.logs is not None:
            if served.features:
                x = np.stack([inputs[f["input"]][:, f["index"]] for f in served.features], axis=1)
            self.log_outcome(log_rows, x, [value(r) for r in first], outcome, served)
        return outputs, outcome

    # ------------------------------------------------------------------ handlers

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
            request.after.append((outcome, served))
            return 200, JSON_TYPE, body, outcome_headers(outcome)
        x, single = self.rows.payload(data)
        y, outcome = await self.predict_rows(x, request.log_rows, key)
        request.after.append((outcome, served))
        extra = outcome_headers(outcome)
        tail: dict[str, Any] = {"model_version": outcome.version}
        if outcome.fallback:
            tail.update(fallback=True, fallback_reason=outcome.reason)
        if single:
            return 200, JSON_TYPE, json_bytes({"prediction": value(y[0]), "success": True, **tail,
                                               "id": outcome.ids[0]}), extra
        return 200, JSON_TYPE, json_bytes({"predictions": [value(r) for r in y], "success": True, **tail,
                                           "ids": outcome.ids}), extra

    async def healthz(self, request: Request) -> Answer:
        return 200, JSON_TYPE, b'{"status":"ok"}', []

    async def readyz(self, request: Request) -> Answer:
        failed = self.failed_versions() if not self.repo.single else []
        extra = {"failed_versions": failed} if failed else {}
        if self.ready:
            return 200, JSON_TYPE, json_bytes({"ready": True, **self.info, **extra}), []
        return 503, JSON_TYPE, json_bytes({"ready": False, "success": False, "error": self.ready_error, **extra}), []

    async def metrics(self, request: Request) -> Answer:
        rollout = RolloutCollector(self.repo, {name: m.dispatcher for name, m in self._served.items()})
        return 200, METRICS_TYPE, await self.telemetry.exposition(self.info, rollout), []

    async def drift(self, request: Request) -> Answer:
        return 200, JSON_TYPE, json_bytes(await self.telemetry.drift()), []

    async def index(self, request: Request) -> Answer:
        body = {"name": self.name, "deploykit_edge": __version__, **self.info, "ready": self.ready,
                "routes": self.router.static_paths() + self.tfs.index_paths()}
        return 200, JSON_TYPE, json_bytes(body), []

    async def openapi(self, request: Request) -> Answer:
        if self._openapi is None:
            self._openapi = json_bytes(self.images.describe(openapi(self.p, self.config, self.name)))
        return 200, JSON_TYPE, self._openapi, []


def _now() -> str:
    wall = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


def build_app(config: ServeConfig, log_suffix: str = "") -> EdgeApp:
    """Open the repository (or the one bundle) and the logs for a config.

    Raises:
        EdgeError: the bundle or repository cannot be served or the log folder cannot be written.
        NotServed: the default model has no version that loaded.
    """
    repo = open_repository(config)
    app_model = config.model
    logs = None
    if config.log_dir:
        names = sorted(repo.models) if app_model is None else [app_model]
        features: list[str] = []
        if len(names) == 1 and names[0] in repo.models:
            features = ServedModel(repo, names[0], config.max_batch).feature_names
        logs = CsvLogs(config.log_dir, features, suffix=log_suffix,
                       max_bytes=config.log_max_bytes, backups=config.log_backups)
    return EdgeApp(repo, config, logs, model=app_model)


def app_from_env() -> EdgeApp:
    """Factory for ``--workers N``: each worker process loads its own interpreter and log files, and sets
    its connections' limits."""
    from edge.http_protocol import configure

    config = ServeConfig.from_json(os.environ[CONFIG_ENV])
    configure(limits(config))
    return build_app(config, log_suffix=f".{os.getpid()}")
