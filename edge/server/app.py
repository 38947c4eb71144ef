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
import math
import os
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Optional, TypeVar

import numpy as np

from edge import __version__
from edge import selftest as selftest_mod
from edge.errors import EdgeError
from edge.inputs import InputError, RowParser, parse_json
from edge.logs import CsvLogs
from edge.runner import Predictor
from edge.server.config import CONFIG_ENV, ServeConfig, limits
from edge.server.cors import CORSMiddleware
from edge.server.fastpath import OneRowPath
from edge.server.forms import Forms
from edge.server.images import Images
from edge.server.messages import (JSON_TYPE, HTML_TYPE, Answer, Receive, Reply, Request, Send, error_body,
                                  json_bytes, json_float, read_body)
from edge.server.openapi import openapi
from edge.server.routing import Route, Router
from edge.server import tfserving
from edge.telemetry import Telemetry

T = TypeVar("T")
GET = ("GET", "HEAD")
POST = ("POST",)
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def routes(app: "EdgeApp") -> list[Route]:
    """The route table: every path the server answers, its methods and its handler."""
    tfs, forms = app.tfs, app.forms
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
        # TF Serving; the order matters: a path ending in :predict is a predict whatever comes before
        Route(POST, "/v1/models/{model:tfs_model}:predict", tfs.predict, "tfs_predict", predicts=True),
        Route(POST, "/v1/models/{model:tfs_model}:classify", app.images.classify, "classify", predicts=True),
        Route(GET, "/v1/models/{model:tfs_model}/metadata", tfs.metadata, "tfs_metadata"),
        Route(GET, "/v1/models/{model:tfs_status}", tfs.status, "tfs_status"),
    ]


def value(row: np.ndarray) -> Any:
    """One predicted row as the JSON answers write it: a number, or a list of numbers."""
    flat = np.asarray(row, dtype=np.float64).ravel()
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


def _non_finite(key: str) -> Reply:
    return Reply(422, f"the model produced a non-finite output {key!r} for these inputs; "
                      "send values nearer the training range")


class EdgeApp:
    """The ASGI app around one Predictor (see the module's docstring)."""

    TALLY_EVERY = Telemetry.TALLY_EVERY
    TIMED_RUNS = 5
    value = staticmethod(value)

    def __init__(self, predictor: Predictor, config: ServeConfig, logs: Optional[CsvLogs] = None) -> None:
        self.p = predictor
        self.config = config
        self.logs = logs
        self.name = predictor.bundle.name
        self.features = list(predictor.manifest.get("features") or [])
        self.feature_names = [f["name"] for f in self.features]
        self.rows = RowParser(self.features, config.max_batch) if self.features else None
        self.telemetry = Telemetry(self.features, config.drift_window, config.shared_dir,
                                   log_errors=lambda: logs.errors if logs is not None else 0)
        self.ready = False
        self.ready_error = "self-test has not run"
        self.predict_seconds: Optional[float] = None  # one prediction, timed at start-up
        self.inline = False  # ready, and predictions run on the event loop (the fast path may answer)
        self._executor: Optional[ThreadPoolExecutor] = None  # the inference thread, when not inline
        self.info = {"model": self.name, "variant": predictor.variant, "sha256": predictor.sha256,
                     "runtime": predictor.runtime.describe(), "artifact": predictor.artifact["path"]}
        self._openapi: Optional[bytes] = None
        self.tfs = tfserving.TFServing(self)
        self.forms = Forms(self)
        self.images = Images(self)
        self.router = Router(routes(self), tfserving.CONVERTERS)
        self._asgi = OneRowPath(self, CORSMiddleware(self._http, config.allow_origins, self.router, self._record))

    # ------------------------------------------------------------------ lifecycle

    def startup(self) -> None:
        """Run the self-test; ``/readyz`` answers 200 only when it passed."""
        try:
            result = selftest_mod.run(self.p)
        except EdgeError as exc:
            self.ready, self.ready_error = False, str(exc)
            return
        self.ready = bool(result["passed"])
        self.ready_error = "" if self.ready else "self-test failed: " + "; ".join(result["failures"])
        self.predict_seconds = self._time_one_prediction()
        if self.predict_seconds > self.config.offload_after and self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deploykit-edge-inference")
            self._executor.submit(self._time_one_prediction).result()  # loads the thread's own interpreter
        self.inline = self.ready and self._executor is None

    def _time_one_prediction(self) -> float:
        """The median time of one prediction of a batch of one (zeros; the self-test has checked the model);
        0 when the model refuses zeros (then predictions stay inline, as before this was measured)."""
        inputs = {s["name"]: np.zeros([1] + [1 if d is None else int(d) for d in s["shape"][1:]], dtype=s["dtype"])
                  for s in self.p.manifest["inputs"]}
        times = []
        try:
            for _ in range(self.TIMED_RUNS):
                t = time.perf_counter()
                self.p.predict(inputs)
                times.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001 - a start-up measurement, never a reason not to start
            return 0.0
        return statistics.median(times)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, a model call: inline, or on the inference thread (see the module's docstring)."""
        if self._executor is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def shutdown(self) -> None:
        """Close the logs (fsync) and say on stderr what was written and what, if anything, was lost."""
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
                    self.telemetry.start(asyncio.get_running_loop())
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
                if route.predicts and not self.ready and not self.config.serve_unready:
                    raise Reply(503, f"not ready ({self.ready_error}): predictions are refused until the self-test "
                                     "passes (see /readyz); start with --serve-unready to answer anyway")
                status, content_type, body, extra = await route.handler(request)
            except Reply as reply:
                status, error = reply.status, str(reply)
                content_type, body, extra = JSON_TYPE, error_body(error), reply.headers
            except InputError as exc:
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
        """The request's line and its predictions' lines (each written to the OS before this returns)."""
        logs = self.logs
        assert logs is not None
        wall = time.time()
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"
        client = scope.get("client")
        client_text = f"{client[0]}:{client[1]}" if client else ""
        latency_ms = round(elapsed * 1000, 3)
        for cells in log_rows:
            logs.prediction([now, request_id, client_text, *cells, self.p.variant, self.p.sha256, latency_ms])
        logs.request([now, request_id, client_text, scope["method"], scope["path"][:200], status, latency_ms, error[:300]])

    # ------------------------------------------------------------------ predictions

    @staticmethod
    def check_outputs(outputs: dict[str, np.ndarray]) -> None:
        """Raises: Reply: 422 when an output is not finite."""
        for key, arr in outputs.items():
            if not (math.isfinite(float(arr.flat[0])) if arr.size == 1 else np.all(np.isfinite(arr))):
                raise _non_finite(key)

    async def predict_rows(self, x: np.ndarray, log_rows: list[list[Any]]) -> np.ndarray:
        """Predict checked feature rows; count them and add their prediction-log rows.

        Raises:
            Reply: 422 for a non-finite output.
        """
        y = np.asarray(await self.run(self.p.predict_rows, x), dtype=np.float64)
        self.check_outputs({self.p.output_keys[0]: y})
        self._account(x, y, log_rows)
        return y

    async def predict_inputs(self, inputs: dict[str, np.ndarray], log_rows: list[list[Any]]) -> dict[str, np.ndarray]:
        """Predict checked input tensors (TF Serving's); count them and add their prediction-log rows.

        Raises:
            Reply: 422 for a non-finite output.
        """
        outputs = await self.run(self.p.predict, inputs)
        self.check_outputs(outputs)
        if self.features:
            x = np.stack([inputs[f["input"]][:, f["index"]] for f in self.features], axis=1)
            self._account(x, np.asarray(outputs[self.p.output_keys[0]], dtype=np.float64), log_rows)
        else:
            self.telemetry.count_predictions(next(iter(inputs.values())).shape[0])
        return outputs

    def _account(self, x: np.ndarray, y: np.ndarray, log_rows: list[list[Any]]) -> None:
        self.telemetry.count_rows(x)
        if self.logs is not None:
            for row, pred in zip(x, y):
                log_rows.append([*[float(v) for v in row], json.dumps(value(pred))])

    def predict_one(self, row: list[float], log_rows: Optional[list[list[Any]]]) -> bytes:
        """One checked row -> the ``/predict_json`` answer body, predicted inline; counted as a batch is (queued).

        Raises:
            Reply: 422 for a non-finite output.
        """
        p = self.p
        return self._one_answer(row, p.predict_value(row) if p.one_value else p.predict_row(row), log_rows)

    def _one_answer(self, row: list[float], result: Any, log_rows: Optional[list[list[Any]]]) -> bytes:
        """The answer body of one row's ``result`` (``predict_value``'s float, else ``predict_row``'s array);
        the row counted (queued) and logged.

        Raises:
            Reply: 422 for a non-finite output.
        """
        p = self.p
        if p.one_value:
            v = result
            if v - v != 0.0:
                raise _non_finite(p.output_keys[0])
            body = b'{"prediction":' + json_float(v) + b',"success":true}'  # what json_bytes would write
            answer: Any = v
        else:
            y = result
            self.check_outputs({p.output_keys[0]: y})
            answer = value(y)
            body = json_bytes({"prediction": answer, "success": True})
        self.telemetry.queue_row(row)
        if log_rows is not None and self.logs is not None:
            log_rows.append([*row, json.dumps(answer)])
        return body

    # ------------------------------------------------------------------ handlers

    async def predict_json(self, request: Request) -> Answer:
        """Raises: InputError: as ``RowParser``; Reply: as ``read_body`` and the predictions."""
        data = parse_json(await read_body(request, (JSON_TYPE,), self.config.max_body))
        if self.rows is None:
            raise InputError(422, f"this model has no tabular features; POST to /v1/models/{self.name}:predict")
        row = self.rows.quick_row(data)
        if row is not None:  # one row: as the fast path answers it
            p = self.p
            result = await self.run(p.predict_value if p.one_value else p.predict_row, row)
            return 200, JSON_TYPE, self._one_answer(row, result, request.log_rows), []
        x, single = self.rows.payload(data)
        y = await self.predict_rows(x, request.log_rows)
        if single:
            return 200, JSON_TYPE, json_bytes({"prediction": value(y[0]), "success": True}), []
        return 200, JSON_TYPE, json_bytes({"predictions": [value(r) for r in y], "success": True}), []

    async def healthz(self, request: Request) -> Answer:
        return 200, JSON_TYPE, b'{"status":"ok"}', []

    async def readyz(self, request: Request) -> Answer:
        if self.ready:
            return 200, JSON_TYPE, json_bytes({"ready": True, **self.info}), []
        return 503, JSON_TYPE, json_bytes({"ready": False, "success": False, "error": self.ready_error}), []

    async def metrics(self, request: Request) -> Answer:
        return 200, METRICS_TYPE, await self.telemetry.exposition(self.info), []

    async def drift(self, request: Request) -> Answer:
        return 200, JSON_TYPE, json_bytes(await self.telemetry.drift()), []

    async def index(self, request: Request) -> Answer:
        body = {"name": self.name, "deploykit_edge": __version__, **self.info, "ready": self.ready,
                "routes": self.router.static_paths() + self.tfs.index_paths()}
        return 200, JSON_TYPE, json_bytes(body), []

    async def openapi(self, request: Request) -> Answer:
        if self._openapi is None:
            self._openapi = json_bytes(self.images.describe(openapi(self.p, self.config)))
        return 200, JSON_TYPE, self._openapi, []


def build_app(config: ServeConfig, log_suffix: str = "") -> EdgeApp:
    """Load the predictor and logs for a config.

    Raises:
        EdgeError: the bundle cannot be served or the log folder cannot be written.
    """
    predictor = Predictor(config.bundle, config.variant, num_threads=config.threads, allow_rejected=config.allow_rejected)
    logs = None
    if config.log_dir:
        logs = CsvLogs(config.log_dir, predictor.bundle.feature_names(), suffix=log_suffix,
                       max_bytes=config.log_max_bytes, backups=config.log_backups)
    return EdgeApp(predictor, config, logs)


def app_from_env() -> EdgeApp:
    """Factory for ``--workers N``: each worker process loads its own interpreter and log files, and sets
    its connections' limits."""
    from edge.http_protocol import configure

    config = ServeConfig.from_json(os.environ[CONFIG_ENV])
    configure(limits(config))
    return build_app(config, log_suffix=f".{os.getpid()}")
