"""The Open Inference Protocol v2 REST adapter (KServe, Triton and MLServer clients): ``GET /v2``,
``/v2/health/live``, ``/v2/health/ready``, ``GET /v2/models/NAME[/versions/N]`` (metadata) and its
``/ready``, ``POST /v2/models/NAME[/versions/N]/infer``. The codec is ``edge.oip`` (typed tensors, Triton's
binary tensor extension through ``Inference-Header-Content-Length``); the model's ``Dispatcher`` answers
(a version in the path reaches that version; none takes the default route: canary, fallback, shadow).

Errors are the protocol's ``{"error": "..."}`` with the status of the problem (400 for a request the
codec refuses, 404 for an unknown model or version, 503 for one that is not AVAILABLE). The answer's
``parameters`` carry the prediction ids (for ``POST /v1/models/NAME/feedback``) and the fallback; the
``x-model-version`` / ``x-prediction-id`` headers are sent as on every prediction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from edge import __version__
from edge import oip
from edge.dispatch import DispatchError
from edge.errors import EdgeError
from edge.inputs import InputError
from edge.repository import NotServed, VERSION_NAME
from edge.server.messages import JSON_TYPE, Answer, Reply, Request, json_bytes, outcome_headers, read_body

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp

OCTET_TYPE = b"application/octet-stream"
_ACCEPT = (JSON_TYPE, OCTET_TYPE, b"")
_ERRORS = (oip.OipError, NotServed, DispatchError, InputError, Reply)


def _error(exc: Exception) -> Answer:
    status = getattr(exc, "status", 400)
    return status, JSON_TYPE, oip.error_body(str(exc)), list(getattr(exc, "headers", []) or [])


def _version(request: Request) -> Optional[int]:
    """Raises: NotServed: 404 for a version that is not a positive integer."""
    text = request.params.get("version")
    if text is None:
        return None
    if not VERSION_NAME.match(text):
        raise NotServed(404, f"version {text[:40]} of model {request.params['name'][:100]!r} not found; versions "
                             "are positive integers")
    return int(text)


class OpenInference:
    """The OIP v2 handlers over an ``EdgeApp``."""

    def __init__(self, app: "EdgeApp") -> None:
        self.app = app

    async def server(self, request: Request) -> Answer:
        return 200, JSON_TYPE, json_bytes(oip.server_metadata(__version__)), []

    async def live(self, request: Request) -> Answer:
        return 200, JSON_TYPE, b'{"live":true}', []

    async def ready(self, request: Request) -> Answer:
        app = self.app
        if app.ready:
            return 200, JSON_TYPE, b'{"ready":true}', []
        return 503, JSON_TYPE, oip.error_body(f"not ready: {app.ready_error}"), []

    async def metadata(self, request: Request) -> Answer:
        try:
            name = request.params["name"]
            repo = self.app.repo
            version = repo.resolve(name, _version(request))
            versions = [version.number] if "version" in request.params else repo.model(name).available()
            return 200, JSON_TYPE, json_bytes(oip.model_metadata(name, versions, version.predictor.manifest)), []
        except _ERRORS as exc:
            return _error(exc)

    async def model_ready(self, request: Request) -> Answer:
        try:
            name = request.params["name"]
            self.app.repo.resolve(name, _version(request))
            return 200, JSON_TYPE, json_bytes({"name": name, "ready": True}), []
        except _ERRORS as exc:
            return _error(exc)

    async def infer(self, request: Request) -> Answer:
        app = self.app
        try:
            name = request.params["name"]
            served = app.served(name)
            version = _version(request)
            if not app.ready and not app.config.serve_unready and app.repo.single:
                raise Reply(503, f"not ready ({app.ready_error}); see /v2/health/ready")
            body = await read_body(request, _ACCEPT, app.config.max_body)
            header = request.headers.get(oip.HEADER_LENGTH.encode())
            decoded = oip.decode_request(body, served.manifest, app.config.max_batch,
                                         header.decode("latin-1") if header is not None else None)
            try:
                outputs, outcome = await app.predict_inputs(decoded.inputs, request.log_rows, served, version=version,
                                                            key=app.sticky_key(request, served))
            except (oip.OipError, NotServed, DispatchError, InputError):  # InputError: its own status (422)
                raise
            except EdgeError as exc:  # inputs the model refuses
                raise oip.OipError(str(exc)) from None
            params: dict[str, Any] = {"prediction_ids": ",".join(outcome.ids)}
            if outcome.fallback:
                params.update(fallback=True, fallback_reason=outcome.reason)
            answer, json_length = oip.encode_response(name, outcome.version, decoded.id or outcome.ids[0], outputs,
                                                      served.manifest, decoded, parameters=params)
        except _ERRORS as exc:
            return _error(exc)
        extra = outcome_headers(outcome)
        if json_length is None:
            return 200, JSON_TYPE, answer, extra
        return 200, OCTET_TYPE, answer, [(oip.HEADER_LENGTH.encode(), b"%d" % json_length), *extra]
