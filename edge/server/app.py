"""``EdgeApp``: the ASGI app around one ``Predictor``, and ``build_app`` / ``app_from_env`` that make it.

The app is three layers, outermost first: the one-row fast path (``edge.server.fastpath``), CORS
(``edge.server.cors``), and this module's ``_http``, which matches the route (``edge.server.routing``,
the table is ``routes`` below), checks the method, the concurrency limit and readiness, calls the
handler, turns any exception into a JSON error answer (no input raises out of the app), writes the log
lines before the answer leaves, and counts the request (``edge.telemetry``). The course's, health and
metrics handlers live here; TF Serving's in ``edge.server.tfserving``, the pages in ``edge.server.forms``.

``EdgeApp`` is made of three parts along the request's life: this module (the models, the ASGI entry,
the general path, the log lines, the plain handlers), ``edge.server.lifecycle`` (start-up and readiness,
whether predictions run inline or on the inference thread, the repository's scans, shutdown) and
``edge.server.predictions`` (from checked input to the dispatcher and back, and the hand-off of shadow
jobs to the shadow worker, ``edge.server.shadow_worker``). Each worker process has its own interpreter.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
import uuid
from functools import cached_property
from typing import TYPE_CHECKING, Any, Optional

from edge import __version__
from edge.dispatch import DispatchError
from edge.errors import EdgeError
from edge.inputs import InputError
from edge.repository import NotServed, Repository
from edge.runner import Predictor
from edge.server.config import CONFIG_ENV, ServeConfig, limits
from edge.server.cors import CORSMiddleware
from edge.server.fastpath import OneRowPath
from edge.server.images import Images
from edge.server.inference import InferenceThread
from edge.server.lifecycle import Lifecycle
from edge.server.messages import (JSON_TYPE, HTML_TYPE, Answer, Receive, Reply, Request, Send, error_body,
                                  json_bytes, logged_error, utc_now)
from edge.server.later import Later, document_later
from edge.server.routing import Route, Router
from edge.server.predictions import Predicting, value
from edge.server.served import ServedModel, open_repository
from edge.server.shadow_worker import ShadowWorker
from edge.server.slot import Slot
from edge.server.tfserving import CONVERTERS, TFServing
from edge.telemetry import Telemetry

if TYPE_CHECKING:  # pragma: no cover
    from edge.logs import CsvLogs
    from edge.server.feedback import Feedback
    from edge.server.forms import Forms
    from edge.server.oip import OpenInference

GET = ("GET", "HEAD")
POST = ("POST",)
METRICS_TYPE = b"text/plain; version=0.0.4; charset=utf-8"


def routes(app: "EdgeApp") -> list[Route]:
    """The route table: every path the server answers, its methods, its handler and its documentation (the
    names of its request body and answers in ``edge.server.openapi.catalog``); /openapi.json is made from it."""
    tfs, forms, v2, feedback = app.tfs, Later(app, "forms"), Later(app, "oip"), Later(app, "feedback")
    oip_model, oip_ready = "OIP v2: model metadata.", "OIP v2: model ready."
    oip_infer = "OIP v2 inference: typed tensors (JSON, or Triton's binary extension)."
    table = [
        Route(POST, "/predict_json", app.predict_json, "predict_json", predicts=True, request="rows", response="prediction",
              summary="Predict one row or a list of rows (the course's contract)."),
        Route(GET, "/form", forms.form, "form", summary="The HTML form.", response="page"),
        Route(POST, "/predict_form", forms.predict_form, "predict_form", predicts=True, error_page=lambda error: app.forms.error_page(error),
              summary="Predict from the HTML form.", request="form", response="result_page"),
        Route(GET, "/healthz", app.healthz, "healthz", limited=False, summary="Alive.", response="alive"),
        Route(GET, "/readyz", app.readyz, "readyz", limited=False, response="ready",
              summary="Model loaded and self-test passed (503 otherwise)."),
        Route(GET, "/metrics", app.metrics, "metrics", limited=False, summary="Prometheus metrics.", response="text"),
        Route(GET, "/drift", app.drift, "drift", summary="Per-feature KS drift of the recent input window."),
        Route(GET, "/", app.index, "index", summary="What this server serves."),
        Route(GET, "/feedback", feedback.metrics, "feedback_metrics",
              summary="Online metrics per model, version and window from the joined ground truth."),
        Route(GET, "/v1/repository", feedback.repository, "repository",
              summary="The model repository as the server sees it (versions, states, labels)."),
        # TF Serving; the order matters: a path ending in :predict is a predict whatever comes before
        Route(POST, "/v1/models/{model:tfs_model}:predict", tfs.predict, "tfs_predict", predicts=True, request="tfs",
              response="tfs_predictions",
              summary="TensorFlow Serving REST predict (row format `instances` or columnar `inputs`)."),
        Route(POST, "/v1/models/{model:tfs_model}:classify", app.images.classify, "classify", predicts=True,
              response="classify", summary="Classify images: the top k classes with their labels (?k=N, default 5)."),
        Route(POST, "/v1/models/{model:tfs_model}/feedback", feedback.feedback, "feedback", request="feedback",
              response="feedback",
              summary="Ground truth for earlier predictions, joined by prediction id (one item or a list)."),
        Route(GET, "/v1/models/{model:tfs_model}/metadata", tfs.metadata, "tfs_metadata", response="tfs_model",
              summary="TensorFlow Serving model metadata (signature)."),
        Route(GET, "/v1/models/{model:tfs_status}", tfs.status, "tfs_status", response="tfs_model",
              summary="TensorFlow Serving model status."),
        # the Open Inference Protocol v2 (edge.server.oip)
        Route(GET, "/v2", v2.server, "oip_server", summary="Open Inference Protocol v2: server metadata."),
        Route(GET, "/v2/health/live", v2.live, "oip_live", limited=False, summary="OIP v2: live."),
        Route(GET, "/v2/health/ready", v2.ready, "oip_ready", limited=False, response="oip_ready",
              summary="OIP v2: ready (503 otherwise)."),
        Route(GET, "/v2/models/{name}", v2.metadata, "oip_metadata", response="oip_model", summary=oip_model),
        Route(GET, "/v2/models/{name}/versions/{version}", v2.metadata, "oip_metadata", response="oip_model",
              summary=oip_model),
        Route(GET, "/v2/models/{name}/ready", v2.model_ready, "oip_model_ready", limited=False, response="oip_model",
              summary=oip_ready),
        Route(GET, "/v2/models/{name}/versions/{version}/ready", v2.model_ready, "oip_model_ready", limited=False,
              response="oip_model", summary=oip_ready),
        Route(POST, "/v2/models/{name}/infer", v2.infer, "oip_infer", request="oip_infer", response="oip_outputs",
              summary=oip_infer),
        Route(POST, "/v2/models/{name}/versions/{version}/infer", v2.infer, "oip_infer", request="oip_infer",
              response="oip_outputs", summary=oip_infer),
    ]
    # the document of this very table, itself included
    table.append(Route(GET, "/openapi.json", document_later(app, table), "openapi", summary="This document."))
    return table


class EdgeApp(Lifecycle, Predicting):
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
    value = staticmethod(value)

    def __init__(self, repo: Repository, config: ServeConfig, logs: Optional["CsvLogs"] = None,
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
        self.shadows = ShadowWorker(logs, log=self._event)  # the shadow's worker process (started at the first copy)
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
        self._executor: Optional[InferenceThread] = None  # the inference thread, when not inline
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._scan_task: Optional[asyncio.Task] = None
        self._scan_timer: Optional[asyncio.TimerHandle] = None
        self.tfs = TFServing(self)
        self.images = Images(self)  # its offloads() is asked at start-up
        self.router = Router(routes(self), CONVERTERS)
        self._asgi = OneRowPath(self, CORSMiddleware(self._http, config.allow_origins, self.router, self._record))

    # ------------------------------------------------------------------ parts made on first use

    @cached_property
    def forms(self) -> "Forms":
        """The HTML pages (``edge.server.forms``), imported at the first page request."""
        from edge.server.forms import Forms

        return Forms(self)

    @cached_property
    def oip(self) -> "OpenInference":
        """The Open Inference Protocol v2 routes (``edge.server.oip``), imported at their first request."""
        from edge.server.oip import OpenInference

        return OpenInference(self)

    @cached_property
    def feedback(self) -> "Feedback":
        """The feedback and repository routes (``edge.server.feedback``), imported at their first request."""
        from edge.server.feedback import Feedback

        return Feedback(self)

    # ------------------------------------------------------------------ models

    def served(self, name: str) -> ServedModel:
        """A model of the repository, by name.

        Raises:
            NotServed: 404 for an unknown model, 503 for one with no loaded version yet.
        """
        found = self._served.get(name)
        if found is None:
            found = self._served[name] = ServedModel(self.repo, name, self.config.max_batch, log=self._event)
            found.dispatcher.shadow_sink = self.shadows.feed()  # copies batched for the shadow worker process
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

    @property
    def subject(self) -> str:
        """What the start-up banner says is served: the model's name as the URLs use it (a repository's
        model folder, not its manifest's name) and, in a repository, the version the default route
        answers with and how many are AVAILABLE (``houses version 2 of 3 AVAILABLE``)."""
        if self.repo.single:
            return self.name
        try:
            number = self.repo.resolve(self.name).number
        except NotServed:
            return f"{self.name} (no version AVAILABLE yet)"
        return f"{self.name} version {number} of {len(self.repo.models[self.name].available())} AVAILABLE"

    def _event(self, line: str) -> None:
        """A rollout event (a rollback, a scan's change) on stderr, one line."""
        print(line if line.startswith("deploykit-edge: ") else f"deploykit-edge: {line}", file=sys.stderr, flush=True)

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._asgi(scope, receive, send)
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    self.startup()
                    loop = self._loop = asyncio.get_running_loop()
                    self.shadows.attach(loop)
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
        slot: Optional[Slot] = None
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
                    slot = Slot(self.telemetry, self.config.max_concurrency, receive)
                    if method in GET:  # no body to wait for
                        slot.take()
                    else:
                        request.receive = slot.receive
                if route.predicts and not self.ready and not self.config.serve_unready and self.repo.single:
                    raise Reply(503, f"not ready ({self.ready_error}): predictions are refused until the self-test "
                                     "passes (see /readyz); start with --serve-unready to answer anyway")
                status, content_type, body, extra = await route.handler(request)
                if status >= 400 and content_type == JSON_TYPE:  # an error answered, not raised (OIP, feedback)
                    error = logged_error(body)
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
        finally:
            if slot is not None and slot.taken:
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
        now = utc_now()
        client = scope.get("client")
        client_text = f"{client[0]}:{client[1]}" if client else ""
        latency_ms = round(elapsed * 1000, 3)
        for cells in log_rows:
            logs.prediction([now, request_id, client_text, *cells[:-3], latency_ms, *cells[-3:]])
        logs.request([now, request_id, client_text, scope["method"], scope["path"][:200], status, latency_ms, error[:300]])

    # ------------------------------------------------------------------ handlers

    async def healthz(self, request: Request) -> Answer:
        return 200, JSON_TYPE, b'{"status":"ok"}', []

    async def readyz(self, request: Request) -> Answer:
        failed = self.failed_versions() if not self.repo.single else []
        extra = {"failed_versions": failed} if failed else {}
        if self.ready:
            return 200, JSON_TYPE, json_bytes({"ready": True, **self.info, **extra}), []
        return 503, JSON_TYPE, json_bytes({"ready": False, "success": False, "error": self.ready_error, **extra}), []

    async def metrics(self, request: Request) -> Answer:
        from edge.rollout_metrics import RolloutCollector  # prometheus_client: imported at the first scrape

        rollout = RolloutCollector(self.repo, {name: m.dispatcher for name, m in self._served.items()})
        return 200, METRICS_TYPE, await self.telemetry.exposition(self.info, rollout), []

    async def drift(self, request: Request) -> Answer:
        return 200, JSON_TYPE, json_bytes(await self.telemetry.drift()), []

    async def index(self, request: Request) -> Answer:
        body = {"name": self.name, "deploykit_edge": __version__, **self.info, "ready": self.ready,
                "routes": self.router.static_paths() + self.tfs.index_paths()}
        return 200, JSON_TYPE, json_bytes(body), []



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
        from edge.logs import CsvLogs

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
