"""The ``deploykit-edge serve`` ASGI application: a plain ASGI callable, no framework.

Routes: ``POST /predict_json``, ``GET /form``, ``POST /predict_form``, TF Serving's
``POST /v1/models/{name}:predict``, ``GET /v1/models/{name}``, ``GET /v1/models/{name}/metadata``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /drift``, ``GET /openapi.json``, ``GET /``.

Every error is JSON ``{"success": false, "error": "..."}`` with the status of the issue's table (the
form route answers HTML). No input raises out of the app: unexpected exceptions become a 500 answer.

Predictions run inline on the event loop: a tabular TFLite model answers in microseconds, far less
than a thread hand-off costs. Each worker process has its own interpreter.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import json
import math
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional
from urllib.parse import parse_qs

import numpy as np

from edge import __version__
from edge import selftest as selftest_mod
from edge.drift import DriftMonitor
from edge.errors import EdgeError
from edge.inputs import FLOAT32_MAX, InputError, RowParser, check_tensor, parse_json
from edge.limits import DEFAULTS as LIMIT_DEFAULTS, Limits
from edge.logs import CsvLogs
from edge import workers
from edge.metrics import Metrics, merge_states
from edge.runner import Predictor

try:  # optional (serve extra): formats a float faster than repr
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]

JSON_TYPE = b"application/json"
CONFIG_ENV = "DEPLOYKIT_EDGE_SERVE_CONFIG"


@dataclass
class ServeConfig:
    """Everything ``serve`` needs; also passed to worker processes as JSON in ``CONFIG_ENV``."""

    bundle: str
    variant: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    allow_origins: list[str] = field(default_factory=list)
    log_dir: Optional[str] = None
    max_body: int = LIMIT_DEFAULTS.max_body
    max_batch: int = 1000
    max_concurrency: int = 64
    drift_window: int = 500
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    allow_rejected: bool = False
    serve_unready: bool = False
    forwarded_allow_ips: Optional[str] = None
    shared_dir: Optional[str] = None  # --workers N: where workers share metrics and drift (edge.workers)
    # HTTP limits, enforced by edge.http_protocol; defaults in edge.limits
    max_header_bytes: int = LIMIT_DEFAULTS.max_header_bytes
    max_headers: int = LIMIT_DEFAULTS.max_headers
    header_timeout: float = LIMIT_DEFAULTS.header_timeout
    body_timeout: float = LIMIT_DEFAULTS.body_timeout
    keep_alive_timeout: float = LIMIT_DEFAULTS.keep_alive_timeout
    max_connections: int = LIMIT_DEFAULTS.max_connections
    graceful_timeout: float = LIMIT_DEFAULTS.graceful_timeout

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        return cls(**json.loads(text))


class _Reply(Exception):
    """Internal: answer now with this status and message."""

    def __init__(self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


def _json(obj: Any) -> bytes:
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")


_perf_counter = time.perf_counter
_JSON_HEADER = (b"content-type", JSON_TYPE)


def _json_float(value: float) -> bytes:
    """A finite float's JSON text exactly as ``json.dumps`` writes it (``repr``): orjson's for
    1e-4 <= |value| < 1e16 and zero, where the two texts are the same; repr's elsewhere (orjson writes
    1e-5 where repr writes 1e-05)."""
    if _orjson is not None and (1e-4 <= value < 1e16 or -1e16 < value <= -1e-4 or value == 0.0):
        return _orjson.dumps(value)
    return repr(value).encode()


def _value(row: np.ndarray) -> Any:
    flat = np.asarray(row, dtype=np.float64).ravel()
    return float(flat[0]) if flat.size == 1 else [float(v) for v in flat]


class EdgeApp:
    """The ASGI app around one Predictor."""

    STATIC_ROUTES = {
        "/predict_json": ("predict_json", ("POST",)),
        "/predict_form": ("predict_form", ("POST",)),
        "/form": ("form", ("GET", "HEAD")),
        "/healthz": ("healthz", ("GET", "HEAD")),
        "/readyz": ("readyz", ("GET", "HEAD")),
        "/metrics": ("metrics", ("GET", "HEAD")),
        "/drift": ("drift", ("GET", "HEAD")),
        "/openapi.json": ("openapi", ("GET", "HEAD")),
        "/": ("index", ("GET", "HEAD")),
    }
    UNLIMITED = {"healthz", "readyz", "metrics"}
    PREDICTING = {"predict_json", "predict_form", "tfs_predict"}
    TALLY_EVERY = 512
    METRICS_DRIFT_MAX_AGE = 1.0  # seconds: a scrape may see drift results this old (``/drift`` never does)

    def __init__(self, predictor: Predictor, config: ServeConfig, logs: CsvLogs | None = None) -> None:
        self.p = predictor
        self.config = config
        self.logs = logs
        self.name = predictor.bundle.name
        self.features = list(predictor.manifest.get("features") or [])
        self.feature_names = [f["name"] for f in self.features]
        self.rows = RowParser(self.features, config.max_batch) if self.features else None
        self.metrics = Metrics(self.feature_names, [f["min"] for f in self.features], [f["max"] for f in self.features])
        self.drift = DriftMonitor(self.features, window=config.drift_window)
        # Rows predicted one at a time, and the latencies of the course requests answered by the short
        # path: queued here, counted into metrics and drift in bulk by _tally (a list append per request).
        self._row_queue: list[list[float]] = []
        self._course_seconds: list[float] = []
        self.origins = {o.rstrip("/") for o in config.allow_origins}
        self.ready = False
        self.ready_error = "self-test has not run"
        self.info = {"model": self.name, "variant": predictor.variant, "sha256": predictor.sha256,
                     "runtime": predictor.runtime.describe(), "artifact": predictor.artifact["path"]}
        self._openapi: bytes | None = None
        self.shared = workers.Shared(config.shared_dir) if config.shared_dir else None  # --workers N
        self._snapshot_handle: asyncio.TimerHandle | None = None
        self._handlers = {name[3:]: getattr(self, name) for name in dir(type(self)) if name.startswith("_h_")}

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

    def shutdown(self) -> None:
        """Close the logs (fsync) and say on stderr what was written and what, if anything, was lost."""
        if self.shared is not None:
            if self._snapshot_handle is not None:
                self._snapshot_handle.cancel()
            self._snapshot()
        if self.logs is not None:
            self.logs.close()
            print(f"deploykit-edge: {self.logs.summary()}", file=sys.stderr, flush=True)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if scope["path"] == "/predict_json" and scope["method"] == "POST" and self.logs is None and self.ready:
                await self._course_request(scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.startup()
                    if self.shared is not None:
                        self._snapshot_every(asyncio.get_running_loop())
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    self.shutdown()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    # ------------------------------------------------------------------ the course's request, fast

    async def _course_request(self, scope: dict, receive: Receive, send: Send) -> None:
        """``POST /predict_json`` with one valid row, answered with the fewest steps; anything else (an
        error, a batch, CORS, a chunked body, the concurrency limit) goes to ``_http`` with the body it
        already read, so every check and every error message lives in one place."""
        start = _perf_counter()
        message = await receive()
        answer = None
        metrics = self.metrics
        if (self.rows is not None and message["type"] == "http.request" and not message.get("more_body", False)
                and metrics.inflight < self.config.max_concurrency):
            ctype = None
            for key, value in scope["headers"]:
                if key == b"content-type":
                    ctype = value
                elif key == b"origin" and self.origins:
                    ctype = None
                    break
            body = message.get("body", b"")
            if ctype == JSON_TYPE and len(body) <= self.config.max_body:
                try:
                    row = self.rows.quick_body(body)
                    if row is not None:
                        answer = self._predict_one(row, [])  # no log rows: this path runs without --log-dir
                except (InputError, _Reply):
                    answer = None
        if answer is None:
            replay = [message]

            async def again() -> dict:
                return replay.pop() if replay else await receive()

            await self._http(scope, again, send, start)
            return
        metrics.inflight += 1
        try:
            await send({"type": "http.response.start", "status": 200,
                        "headers": [_JSON_HEADER, (b"content-length", b"%d" % len(answer))]})
            await send({"type": "http.response.body", "body": answer})
        finally:
            metrics.inflight -= 1
            self._course_seconds.append(_perf_counter() - start)

    # ------------------------------------------------------------------ HTTP plumbing

    def _route(self, path: str) -> tuple[str, tuple[str, ...], str | None]:
        static = self.STATIC_ROUTES.get(path)
        if static is not None:
            return static[0], static[1], None
        if path.startswith("/v1/models/"):
            rest = path[len("/v1/models/") :]
            if rest.endswith(":predict"):
                return "tfs_predict", ("POST",), _strip_version(rest[: -len(":predict")])
            if rest.endswith("/metadata"):
                return "tfs_metadata", ("GET", "HEAD"), _strip_version(rest[: -len("/metadata")])
            if rest and "/" not in rest.strip("/") or "/versions/" in rest or "/labels/" in rest:
                return "tfs_status", ("GET", "HEAD"), _strip_version(rest.strip("/"))
        return "", (), None

    def _cors(self, headers: dict[bytes, bytes]) -> list[tuple[bytes, bytes]]:
        origin = headers.get(b"origin")
        if origin and self.origins and origin.decode("latin-1").rstrip("/") in self.origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        return []

    async def _http(self, scope: dict, receive: Receive, send: Send, start: float | None = None) -> None:
        start = time.perf_counter() if start is None else start
        method = scope["method"]
        path = scope["path"]
        headers = dict(scope["headers"])
        route, methods, model_name = self._route(path)
        cors = self._cors(headers)
        request_id = uuid.uuid4().hex[:12] if self.logs is not None else ""
        status = 500
        error = ""
        counted = False
        logged = self.logs is None
        log_rows: list[list[Any]] = []
        try:
            try:
                if not route:
                    raise _Reply(404, f"no route {path}; see /openapi.json")
                if method == "OPTIONS":
                    status = await self._preflight(headers, methods, cors, send)
                    return
                if method not in methods:
                    allow = ", ".join(methods)
                    raise _Reply(405, f"method {method} is not allowed on {path}; use {allow}",
                                 [(b"allow", allow.encode())])
                if route not in self.UNLIMITED:
                    if self.metrics.inflight >= self.config.max_concurrency:
                        self.metrics.rejected_busy += 1
                        raise _Reply(503, f"busy: {self.config.max_concurrency} requests in flight; retry shortly",
                                     [(b"retry-after", b"1")])
                    self.metrics.inflight += 1
                    counted = True
                if route in self.PREDICTING and not self.ready and not self.config.serve_unready:
                    raise _Reply(503, f"not ready ({self.ready_error}): predictions are refused until the self-test "
                                      "passes (see /readyz); start with --serve-unready to answer anyway")
                handler = self._handlers[route]
                status, content_type, body, extra = await handler(
                    scope=scope, receive=receive, headers=headers, model_name=model_name, log_rows=log_rows
                )
            except _Reply as reply:
                status, error = reply.status, str(reply)
                content_type, body, extra = JSON_TYPE, _json({"success": False, "error": error}), reply.headers
            except InputError as exc:
                status, error = exc.status, str(exc)
                content_type, body, extra = JSON_TYPE, _json({"success": False, "error": error}), []
            except Exception as exc:  # noqa: BLE001 - no input may kill the server
                status, error = 500, f"internal error: {type(exc).__name__}: {exc}"
                content_type, body, extra = JSON_TYPE, _json({"success": False, "error": error}), []
            if route == "predict_form" and status >= 400 and content_type == JSON_TYPE:
                content_type, body = b"text/html; charset=utf-8", self._result_page(None, error).encode()
            response_headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
            response_headers += extra + cors
            if not logged:  # before the answer leaves: a client holding a 200 has its line in the log
                logged = True
                self._log(scope, request_id, method, path, status, error, time.perf_counter() - start, log_rows)
            await send({"type": "http.response.start", "status": status, "headers": response_headers})
            await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        finally:
            if counted:
                self.metrics.inflight -= 1
            elapsed = time.perf_counter() - start
            self.metrics.observe(route or "unknown", status, elapsed)
            if not logged:
                self._log(scope, request_id, method, path, status, error, elapsed, log_rows)

    def _log(self, scope: dict, request_id: str, method: str, path: str, status: int, error: str, elapsed: float,
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
        logs.request([now, request_id, client_text, method, path[:200], status, latency_ms, error[:300]])

    async def _preflight(self, headers: dict, methods: tuple[str, ...], cors: list, send: Send) -> int:
        if not cors:
            body = _json({"success": False, "error": "origin not allowed; start the server with --allow-origin ORIGIN"})
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", JSON_TYPE), (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            return 403
        allow_headers = headers.get(b"access-control-request-headers", b"content-type")
        out = cors + [(b"access-control-allow-methods", ", ".join(methods).encode()),
                      (b"access-control-allow-headers", allow_headers), (b"access-control-max-age", b"600"),
                      (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 204, "headers": out})
        await send({"type": "http.response.body", "body": b""})
        return 204

    async def _body(self, receive: Receive, headers: dict, accept: tuple[bytes, ...], scope: dict | None = None) -> bytes:
        """The request body, after the content-type and size checks.

        Raises:
            _Reply: 415 for a content type not in ``accept``, 413 over ``max_body`` (chunked included).
        """
        ctype = headers.get(b"content-type", b"")
        if ctype not in accept:
            ctype = ctype.split(b";", 1)[0].strip().lower()
        if ctype not in accept:
            shown = ctype[:60].decode("latin-1") or "none"
            raise _Reply(415, f"content type {shown} is not supported; send Content-Type: {accept[0].decode()}")
        limit = self.config.max_body
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                if int(declared) > limit:
                    raise _Reply(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
            except ValueError:
                raise _Reply(400, "invalid Content-Length") from None
        message = await receive()
        if message["type"] == "http.request" and not message.get("more_body", False):  # the whole body at once
            body = message.get("body", b"")
            if len(body) > limit:
                raise _Reply(413, f"body is over the limit of {limit} bytes")
            return body
        chunks: list[bytes] = []
        size = 0
        while True:
            if message["type"] == "http.disconnect":
                refused = (scope or {}).get("edge.refused")  # the protocol answered it (408 body timeout, 503)
                raise _Reply(*refused) if refused else _Reply(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _Reply(413, f"body is over the limit of {limit} bytes")
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()

    # ------------------------------------------------------------------ predictions

    def _predict_rows(self, x: np.ndarray, log_rows: list[list[Any]]) -> np.ndarray:
        """Predict checked feature rows; update drift, metrics and the prediction log rows."""
        y = np.asarray(self.p.predict_rows(x), dtype=np.float64)
        self._check_outputs({self.p.output_keys[0]: y})
        self._account(x, y, log_rows)
        return y

    def _tally(self) -> None:
        """Count the queued one-row predictions into metrics and drift (before any read of them, and
        before a batch, so that the drift window keeps the rows in arrival order)."""
        rows, self._row_queue = self._row_queue, []
        seconds, self._course_seconds = self._course_seconds, []
        if rows:
            width = len(rows[0])  # every queued row was checked against the features
            x = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width)
            x = x.reshape(len(rows), width)
            self.metrics.count_rows(x)
            self.drift.add(x)
        self.metrics.observe_many("predict_json", 200, seconds)

    def _account(self, x: np.ndarray, y: np.ndarray, log_rows: list[list[Any]]) -> None:
        """Metrics, drift window and prediction-log rows for predicted feature rows."""
        self._tally()
        self.metrics.count_rows(x)
        self.drift.add(x)
        if self.logs is not None:
            for row, pred in zip(x, y):
                log_rows.append([*[float(v) for v in row], json.dumps(_value(pred))])

    @staticmethod
    def _check_outputs(outputs: dict[str, np.ndarray]) -> None:
        for key, arr in outputs.items():
            if not (math.isfinite(float(arr.flat[0])) if arr.size == 1 else np.all(np.isfinite(arr))):
                raise _Reply(422, f"the model produced a non-finite output {key!r} for these inputs; "
                                  "send values nearer the training range")

    async def _h_predict_json(self, scope: dict, receive: Receive, headers: dict, log_rows: list, **_: Any) -> tuple:
        body = await self._body(receive, headers, (JSON_TYPE,), scope)
        data = parse_json(body)
        if self.rows is None:
            raise InputError(422, f"this model has no tabular features; POST to /v1/models/{self.name}:predict")
        row = self.rows.quick_row(data)
        if row is not None:  # the course's one-row request: the per-request hot path
            return 200, JSON_TYPE, self._predict_one(row, log_rows), []
        x, single = self.rows.payload(data)
        y = self._predict_rows(x, log_rows)
        if single:
            return 200, JSON_TYPE, _json({"prediction": _value(y[0]), "success": True}), []
        return 200, JSON_TYPE, _json({"predictions": [_value(r) for r in y], "success": True}), []

    def _predict_one(self, row: list[float], log_rows: list[list[Any]]) -> bytes:
        """One checked row -> the ``/predict_json`` answer body; metrics, drift and log rows as for a batch."""
        if self.p.one_value:
            value = self.p.predict_value(row)
            if value - value != 0.0:
                raise _Reply(422, f"the model produced a non-finite output {self.p.output_keys[0]!r} for these inputs; "
                                  "send values nearer the training range")
            body = b'{"prediction":' + _json_float(value) + b',"success":true}'  # what _json would write
        else:
            y = self.p.predict_row(row)
            self._check_outputs({self.p.output_keys[0]: y})
            value = _value(y)
            body = _json({"prediction": value, "success": True})
        queue = self._row_queue
        queue.append(row)
        if len(queue) >= self.TALLY_EVERY:  # the course path adds one latency per row, so this bounds both
            self._tally()
        if self.logs is not None:
            log_rows.append([*row, json.dumps(value)])
        return body

    async def _h_tfs_predict(self, scope: dict, receive: Receive, headers: dict, model_name: str, log_rows: list, **_: Any) -> tuple:
        self._check_model(model_name)
        body = await self._body(receive, headers, (JSON_TYPE,), scope)
        data = parse_json(body)
        if not isinstance(data, dict) or ("instances" in data) == ("inputs" in data):
            raise InputError(422, 'the body must be an object with either "instances" (row format) or "inputs" (columnar)')
        signature = data.get("signature_name", "serving_default")
        if signature != "serving_default":
            raise InputError(422, f"unknown signature_name {signature!r}; this model has serving_default")
        specs = self.p.manifest["inputs"]
        if "instances" in data:
            instances = data["instances"]
            if not isinstance(instances, list) or not instances:
                raise InputError(422, '"instances" must be a non-empty list')
            if len(instances) > self.config.max_batch:
                raise InputError(413, f"batch of {len(instances)} instances is over the limit of {self.config.max_batch}")
            inputs = self._instances_to_inputs(instances, specs)
        else:
            columns = data["inputs"]
            if not isinstance(columns, dict):
                if len(specs) != 1:
                    raise InputError(422, f'"inputs" must be an object keyed by {[s["name"] for s in specs]}')
                columns = {specs[0]["name"]: columns}
            inputs = {}
            for spec in specs:
                if spec["name"] not in columns:
                    raise InputError(422, f"input {spec['name']!r} is missing")
                inputs[spec["name"]] = check_tensor(columns[spec["name"]], spec["name"], spec["shape"], "float64",
                                                    spec["dtype"])
            n = {a.shape[0] for a in inputs.values()}
            if max(n) > self.config.max_batch:
                raise InputError(413, f"batch of {max(n)} rows is over the limit of {self.config.max_batch}")
        n_rows = {a.shape[0] for a in inputs.values()}
        if len(n_rows) != 1:
            raise InputError(422, "all inputs must have the same number of rows")
        outputs = self.p.predict(inputs)
        self._check_outputs(outputs)
        keys = self.p.output_keys
        if self.features:
            x = np.stack([inputs[f["input"]][:, f["index"]] for f in self.features], axis=1)
            self._account(x, np.asarray(outputs[keys[0]], dtype=np.float64), log_rows)
        else:
            self.metrics.count_predictions(next(iter(n_rows)))
        if "instances" in data:
            if len(keys) == 1:
                preds = np.asarray(outputs[keys[0]], dtype=np.float64).tolist()
            else:
                rows = next(iter(n_rows))
                preds = [{k: np.asarray(outputs[k][i], dtype=np.float64).tolist() for k in keys} for i in range(rows)]
            return 200, JSON_TYPE, _json({"predictions": preds}), []
        if len(keys) == 1:
            return 200, JSON_TYPE, _json({"outputs": np.asarray(outputs[keys[0]], dtype=np.float64).tolist()}), []
        return 200, JSON_TYPE, _json({"outputs": {k: np.asarray(outputs[k], dtype=np.float64).tolist() for k in keys}}), []

    def _instances_to_inputs(self, instances: list, specs: list[dict]) -> dict[str, np.ndarray]:
        names = [s["name"] for s in specs]
        per_input: dict[str, list] = {n: [] for n in names}
        for i, inst in enumerate(instances, start=1):  # messages number instances from 1, as rows
            if isinstance(inst, dict) and self.rows is not None and not set(names) & set(inst):
                row = self.rows.row(inst, f"instance {i}: ")  # keyed by feature names
                for f, v in zip(self.features, row):
                    per_input.setdefault(f["input"], [])
                for spec in specs:
                    width = spec["shape"][-1]
                    vec = [0.0] * int(width)
                    for f, v in zip(self.features, row):
                        if f["input"] == spec["name"]:
                            vec[f["index"]] = v
                    per_input[spec["name"]].append(vec)
            elif isinstance(inst, dict):
                for n in names:
                    if n not in inst:
                        raise InputError(422, f"instance {i}: input {n!r} is missing; the model takes {names}")
                    per_input[n].append(inst[n])
            else:
                if len(names) != 1:
                    raise InputError(422, f"instance {i}: must be an object keyed by {names}")
                if self.rows is not None and isinstance(inst, list):
                    self.rows.row(inst, f"instance {i}: ")  # names the features on a bad count or value
                per_input[names[0]].append(inst)
        return {s["name"]: check_tensor(per_input[s["name"]], s["name"], s["shape"], "float64", s["dtype"]) for s in specs}

    def _check_model(self, model_name: str | None) -> None:
        name, _, version = (model_name or "").partition("\0")
        if name != self.name:
            raise _Reply(404, f"model {name[:100]!r} not found; this server serves {self.name!r}")
        if version:
            raise _Reply(404, f"{version[:40]} of model {name!r} not found; this server serves version 1 only")

    async def _h_tfs_status(self, model_name: str, **_: Any) -> tuple:
        self._check_model(model_name)
        state = "AVAILABLE" if self.ready else "UNAVAILABLE"
        body = {"model_version_status": [{"version": "1", "state": state,
                                          "status": {"error_code": "OK" if self.ready else "UNAVAILABLE",
                                                     "error_message": "" if self.ready else self.ready_error}}]}
        return 200, JSON_TYPE, _json(body), []

    async def _h_tfs_metadata(self, model_name: str, **_: Any) -> tuple:
        self._check_model(model_name)

        def spec(t: dict, tensor_name: str) -> dict:
            return {"dtype": "DT_" + {"float32": "FLOAT", "float16": "HALF", "int32": "INT32", "int64": "INT64",
                                      "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}[t["dtype"]],
                    "tensor_shape": {"dim": [{"size": str(-1 if d is None else d), "name": ""} for d in t["shape"]],
                                     "unknown_rank": False},
                    "name": tensor_name}

        io = self.p.artifact.get("io") or {}
        signature = {
            "inputs": {t["name"]: spec(t, (io.get("inputs") or {}).get(t["name"], t["name"])) for t in self.p.manifest["inputs"]},
            "outputs": {t["key"]: spec(t, (io.get("outputs") or {}).get(t["key"], t["key"])) for t in self.p.manifest["outputs"]},
            "method_name": "tensorflow/serving/predict",
        }
        body = {"model_spec": {"name": self.name, "signature_name": "", "version": "1"},
                "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}}}
        return 200, JSON_TYPE, _json(body), []

    # ------------------------------------------------------------------ form

    async def _h_form(self, **_: Any) -> tuple:
        fields = []
        for f in self.features:
            label = html.escape(f.get("label") or f["name"]) + (f" ({html.escape(f['unit'])})" if f.get("unit") else "")
            fields.append(
                f'<p><label>{label}<br><input name="{html.escape(f["name"])}" type="number" step="any" required '
                f'value="{f["median"]:g}"></label> <small>training range {f["min"]:g} to {f["max"]:g}</small></p>'
            )
        page = _page(f"{html.escape(self.name)}: predict",
                     f'<form method="post" action="/predict_form">{"".join(fields)}<p><button type="submit">Predict</button></p></form>')
        return 200, b"text/html; charset=utf-8", page.encode(), []

    async def _h_predict_form(self, scope: dict, receive: Receive, headers: dict, log_rows: list, **_: Any) -> tuple:
        body = await self._body(receive, headers, (b"application/x-www-form-urlencoded",), scope)
        if self.rows is None:
            raise InputError(422, "this model has no tabular features")
        try:
            form = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=len(self.features) + 20)
        except (UnicodeDecodeError, ValueError):
            raise InputError(400, "malformed form body") from None
        values: dict[str, Any] = {}
        for name in self.feature_names:
            if name not in form:
                continue
            text = form[name][0].strip()
            try:
                values[name] = float(text)
            except ValueError:
                raise InputError(422, f"{name} must be a number, got {text[:40]!r}; {self.rows.expected}") from None
        x = np.asarray([self.rows.row(values)], dtype=np.float64)
        y = self._predict_rows(x, log_rows)
        return 200, b"text/html; charset=utf-8", self._result_page(_value(y[0]), "").encode(), []

    def _result_page(self, prediction: Any, error: str) -> str:
        if error:
            inner = f'<p class="error">Error: {html.escape(error)}</p>'
        else:
            out = self.p.manifest["outputs"][0]
            inner = f"<p>Predicted {html.escape(out['name'])}: <strong>{html.escape(json.dumps(prediction))}</strong></p>"
        return _page(f"{html.escape(self.name)}: result", inner + '<p><a href="/form">Back to the form</a></p>')

    # ------------------------------------------------------------------ health, metrics, docs

    async def _h_healthz(self, **_: Any) -> tuple:
        return 200, JSON_TYPE, b'{"status":"ok"}', []

    async def _h_readyz(self, **_: Any) -> tuple:
        if self.ready:
            return 200, JSON_TYPE, _json({"ready": True, **self.info}), []
        return 503, JSON_TYPE, _json({"ready": False, "success": False, "error": self.ready_error}), []

    async def _drift_results(self, max_age: float) -> tuple[list, dict[str, Any] | None]:
        """The drift results and, with several workers, their merged metrics state (else None). Computed in
        a worker thread when the window changed (an exact p-value is a lattice-path count: milliseconds per
        feature that must not stall the event loop)."""
        self._tally()
        if self.shared is not None:
            self._snapshot()
            return await asyncio.to_thread(self._merged, max_age)
        results = self.drift.cached(max_age)
        if results is None:
            results = await asyncio.to_thread(self.drift.results, max_age)
        return results, None

    def _merged(self, max_age: float) -> tuple[list, dict[str, Any]]:
        """Every worker's snapshot merged (``edge.workers``): drift of the joint window, summed counters."""
        states, key, rows = workers.merge(self.shared.read_all(), self.drift.window)  # type: ignore[union-attr]
        return self.drift.results(max_age, merged=(key, rows)), merge_states(states)

    def _snapshot(self) -> None:
        """Write this worker's counters and window for the others' scrapes (errors are left for the next)."""
        self._tally()
        rows, times = self.drift.window_rows_and_times()
        try:
            self.shared.write(self.metrics.state(self.logs.errors if self.logs else 0), rows, times,  # type: ignore[union-attr]
                              self.drift.count)
        except OSError:
            pass

    def _snapshot_every(self, loop: asyncio.AbstractEventLoop) -> None:
        self._snapshot()
        self._snapshot_handle = loop.call_later(workers.SNAPSHOT_SECONDS, self._snapshot_every, loop)

    async def _h_metrics(self, **_: Any) -> tuple:
        results, state = await self._drift_results(self.METRICS_DRIFT_MAX_AGE)
        text = self.metrics.render(self.info, [r.as_dict() for r in results], self.logs.errors if self.logs else 0,
                                   state=state)
        return 200, b"text/plain; version=0.0.4; charset=utf-8", text.encode(), []

    async def _h_drift(self, **_: Any) -> tuple:
        return 200, JSON_TYPE, _json(self.drift.report((await self._drift_results(0.0))[0])), []

    async def _h_index(self, **_: Any) -> tuple:
        body = {"name": self.name, "deploykit_edge": __version__, **self.info, "ready": self.ready,
                "routes": sorted(self.STATIC_ROUTES) + [f"/v1/models/{self.name}", f"/v1/models/{self.name}:predict",
                                                         f"/v1/models/{self.name}/metadata"]}
        return 200, JSON_TYPE, _json(body), []

    async def _h_openapi(self, **_: Any) -> tuple:
        if self._openapi is None:
            self._openapi = _json(openapi(self.p, self.config))
        return 200, JSON_TYPE, self._openapi, []


def _strip_version(name: str) -> str:
    """``NAME``, ``NAME/versions/V`` or ``NAME/labels/L`` -> the model name, with the version part kept
    after a NUL when it is not version 1 (the only version served), so that ``_check_model`` answers 404."""
    base, sep, version = name.partition("/versions/")
    if sep:
        return base if version == "1" else f"{base}\0version {version}"
    base, sep, label = name.partition("/labels/")
    return f"{base}\0label {label}" if sep else name


def _page(title: str, inner: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            '<meta name="viewport" content="width=device-width, initial-scale=1"></head>'
            f"<body><h1>{title}</h1>{inner}</body></html>")


def _tensor_schema(spec: dict[str, Any], max_batch: int) -> dict[str, Any]:
    """JSON schema of one input tensor (batch dimension first) as TF Serving's columnar ``inputs`` take it."""
    dtype = spec["dtype"]
    if dtype == "bool":
        leaf: dict[str, Any] = {"type": "boolean"}
    elif dtype in ("int8", "uint8", "int16", "int32", "int64"):
        bits = int(dtype.lstrip("uint"))
        lo, hi = (0, 2**bits - 1) if dtype.startswith("u") else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        leaf = {"type": "integer", "minimum": lo, "maximum": hi}
    else:
        leaf = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    schema = leaf
    dims = list(spec["shape"])
    for i, d in enumerate(reversed(dims)):
        batch = i == len(dims) - 1
        schema = {"type": "array", "items": schema, "minItems": 1 if d is None else int(d),
                  **({"maxItems": max_batch} if batch else {} if d is None else {"maxItems": int(d)})}
    return schema


def openapi(predictor: Predictor, config: ServeConfig) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the server's routes for this bundle: every status each route can
    answer, with its body (the HTTP layer's own refusals, ``edge.http_protocol``, included)."""
    name = predictor.bundle.name
    features = predictor.manifest.get("features") or []
    specs = predictor.manifest["inputs"]
    number = {"type": "number", "minimum": -FLOAT32_MAX, "maximum": FLOAT32_MAX}
    row = {"type": "array", "items": number, "minItems": len(features), "maxItems": len(features),
           "description": "values in this order: " + ", ".join(f["name"] for f in features)}
    obj = {"type": "object", "required": [f["name"] for f in features],
           "properties": {f["name"]: {**number, "description": f.get("label", "")} for f in features}}
    form = {"type": "object", "required": [f["name"] for f in features], "maxProperties": len(features) + 20,
            "properties": {f["name"]: {"type": "string", "pattern": r"^[-+]?(\d{1,30}(\.\d{0,30})?|\.\d{1,30})$"}
                           for f in features}}
    ref = {"$ref": "#/components/schemas/Error"}
    json_error = {"application/json": {"schema": ref}}
    html = {"text/html": {"schema": {"type": "string"}}}

    def errors(statuses: list[tuple[int, str]], content: dict = json_error) -> dict[str, Any]:
        return {str(s): {"description": d, "content": content} for s, d in statuses}

    http_layer = [(400, "malformed HTTP request"), (408, "headers or body not received in time"),
                  (431, "request line and headers too large"), (503, "too many connections, or shutting down")]
    with_body = http_layer + [(413, f"body over {config.max_body} bytes (Content-Length or Expect: 100-continue)"),
                              (417, "an Expect other than 100-continue")]
    predict_errors = with_body + [
        (400, "malformed JSON or body"), (413, f"body over {config.max_body} bytes or batch over {config.max_batch} rows"),
        (415, "wrong content type"), (422, "wrong count, type or non-finite values"), (500, "internal error"),
        (503, "busy: too many requests in flight, too many connections, shutting down, or not ready (the self-test "
              "failed, see /readyz)")]

    def get(summary: str, schema: dict | None = None, ctype: str = "application/json",
            more: list[tuple[int, str]] | None = None, more_content: dict | None = None) -> dict:
        responses = {"200": {"description": "OK", "content": {ctype: {"schema": schema or {}}}},
                     **errors(http_layer), **errors(more or [], more_content or json_error)}
        return {"get": {"summary": summary, "responses": responses}}

    ok = {"type": "object", "required": ["success"], "properties": {"success": {"const": True}}}
    prediction_ok = {"oneOf": [
        {**ok, "required": ["success", "prediction"], "properties": {"success": {"const": True}, "prediction": {}}},
        {**ok, "required": ["success", "predictions"], "properties": {"success": {"const": True},
                                                                      "predictions": {"type": "array"}}}]}
    tensors = {s["name"]: _tensor_schema(s, config.max_batch) for s in specs}
    if features:
        keyed = {"type": "object", "required": [s["name"] for s in specs],
                 "properties": {s["name"]: tensors[s["name"]]["items"] for s in specs}}
        # an object naming an input is taken as keyed by inputs, so the by-feature object names none
        by_feature = {**obj, "not": {"anyOf": [{"required": [s["name"]]} for s in specs]}}
        instance = {"oneOf": [row, by_feature, keyed]} if len(specs) == 1 else {"oneOf": [by_feature, keyed]}
    else:
        keyed = {"type": "object", "required": [s["name"] for s in specs],
                 "properties": {s["name"]: tensors[s["name"]]["items"] for s in specs}}
        instance = tensors[specs[0]["name"]]["items"] if len(specs) == 1 else keyed
    columns = {"type": "object", "required": [s["name"] for s in specs], "properties": tensors}
    if len(specs) == 1:
        columns = {"oneOf": [tensors[specs[0]["name"]], columns]}
    signature = {"type": "string", "const": "serving_default"}
    tfs_body = {"oneOf": [  # exactly one of "instances" and "inputs"; other keys are ignored
        {"type": "object", "required": ["instances"], "not": {"required": ["inputs"]},
         "properties": {"instances": {"type": "array", "items": instance, "minItems": 1, "maxItems": config.max_batch},
                        "signature_name": signature}},
        {"type": "object", "required": ["inputs"], "not": {"required": ["instances"]},
         "properties": {"inputs": columns, "signature_name": signature}}]}
    tfs_ok = {"type": "object", "properties": {"predictions": {"type": "array"}, "outputs": {}}}
    not_found = [(404, f"no such model or version (this server serves {name!r}, version 1)")]
    return {
        "openapi": "3.1.0",
        "info": {"title": f"deploykit-edge: {name}", "version": __version__,
                 "description": f"TFLite {predictor.variant} ({predictor.artifact['path']}) on {predictor.runtime.describe()}"},
        "paths": {
            "/predict_json": {"post": {
                "summary": "Predict one row or a list of rows (the course's contract).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": {"oneOf": [
                    row, obj, {"type": "array", "minItems": 1, "maxItems": config.max_batch,
                               "items": {"oneOf": [row, obj]}}]}}}},
                "responses": {"200": {"description": "prediction", "content": {"application/json": {"schema": prediction_ok}}},
                              **errors(predict_errors)}}},
            "/form": get("The HTML form.", {"type": "string"}, "text/html"),
            "/predict_form": {"post": {"summary": "Predict from the HTML form.",
                                       "requestBody": {"required": True,
                                                       "content": {"application/x-www-form-urlencoded": {"schema": form}}},
                                       "responses": {"200": {"description": "result page", "content": html},
                                                     # the app's errors are pages, the HTTP layer's JSON
                                                     **errors(predict_errors, {**html, **json_error})}}},
            f"/v1/models/{name}:predict": {"post": {
                "summary": "TensorFlow Serving REST predict (row format `instances` or columnar `inputs`).",
                "requestBody": {"required": True, "content": {"application/json": {"schema": tfs_body}}},
                "responses": {"200": {"description": "predictions", "content": {"application/json": {"schema": tfs_ok}}},
                              **errors(predict_errors + not_found)}}},
            f"/v1/models/{name}": get("TensorFlow Serving model status.", {"type": "object"}, more=not_found),
            f"/v1/models/{name}/metadata": get("TensorFlow Serving model metadata (signature).", {"type": "object"},
                                                more=not_found),
            "/healthz": get("Alive.", {"type": "object", "properties": {"status": {"const": "ok"}}}),
            "/readyz": get("Model loaded and self-test passed (503 otherwise).", {"type": "object"},
                           more=[(503, "not ready (the self-test failed), or the HTTP layer's 503")]),
            "/metrics": get("Prometheus metrics.", {"type": "string"}, "text/plain"),
            "/drift": get("Per-feature KS drift of the recent input window.", {"type": "object"}),
            "/openapi.json": get("This document.", {"type": "object"}),
            "/": get("What this server serves.", {"type": "object"}),
        },
        "components": {"schemas": {"Error": {"type": "object", "required": ["success", "error"], "properties": {
            "success": {"const": False}, "error": {"type": "string"}}}}},
    }


def build_app(config: ServeConfig, log_suffix: str = "") -> EdgeApp:
    """Load the predictor and logs for a config.

    Raises:
        EdgeError: the bundle cannot be served or the log folder cannot be written.
    """
    predictor = Predictor(config.bundle, config.variant, allow_rejected=config.allow_rejected)
    logs = None
    if config.log_dir:
        logs = CsvLogs(config.log_dir, predictor.bundle.feature_names(), suffix=log_suffix,
                       max_bytes=config.log_max_bytes, backups=config.log_backups)
    return EdgeApp(predictor, config, logs)


def limits(config: ServeConfig) -> Any:
    """The ``edge.limits.Limits`` of a config."""
    return Limits(max_header_bytes=config.max_header_bytes, max_headers=config.max_headers,
                  header_timeout=config.header_timeout, body_timeout=config.body_timeout,
                  keep_alive_timeout=config.keep_alive_timeout, max_connections=config.max_connections,
                  max_body=config.max_body, graceful_timeout=config.graceful_timeout)


def app_from_env() -> EdgeApp:
    """Factory for ``--workers N``: each worker process loads its own interpreter and log files, and sets
    its connections' limits."""
    from edge.http_protocol import configure

    config = ServeConfig.from_json(os.environ[CONFIG_ENV])
    configure(limits(config))
    return build_app(config, log_suffix=f".{os.getpid()}")
