"""The one-row fast path, the outermost wrapper of the app: ``POST /predict_json`` with one valid row (the
course's request), answered with the fewest steps.

It takes the request only when the server is ready and predicts inline (``EdgeApp.inline``), writes no log (``--log-dir`` unset), the body came
in one message with ``Content-Type: application/json`` exactly, no CORS origin is to be answered, and
the concurrency limit is not reached. Anything else (an error, a batch, a chunked body, an origin) goes on
to the inner app together with the body message already read (replayed by its ``receive``), so every
check and every error message lives in one place.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from edge.dispatch import DispatchError
from edge.inputs import InputError
from edge.repository import NotServed
from edge.server.messages import ANSWER_KEY, JSON_HEADER, JSON_TYPE, ASGIApp, Receive, Reply, Send

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp

_perf_counter = time.perf_counter
#: the status line and headers uvicorn's ``send`` writes for the answer's ``http.response.start`` (names in
#: lower case, no server or date header: ``deploykit-edge serve`` turns both off), for ``answer_whole``
_HEAD = (b"HTTP/1.1 200 OK\r\ncontent-type: " + JSON_TYPE + b"\r\ncontent-length: %d\r\nx-model-version: %s\r\n"
         b"x-prediction-id: %s\r\n%s\r\n")


def _answer_whole(protocol: object, scope: dict, head: bytes, body: bytes) -> bool:
    """``edge.http_protocol.answer_whole``, imported at the first answer whose scope has the protocol
    (uvicorn is loaded then: the protocol put itself in the scope)."""
    global _answer_whole
    from edge.http_protocol import answer_whole

    _answer_whole = answer_whole  # type: ignore[assignment]
    return answer_whole(protocol, scope, head, body)
# The answer's content-length header for the lengths a one-row answer has (made once, not per request).
_LENGTHS = [(b"content-length", b"%d" % n) for n in range(512)]


class OneRowPath:
    """See the module's docstring. ``inner`` answers everything this does not."""

    def __init__(self, app: "EdgeApp", inner: ASGIApp) -> None:
        self.app = app
        self.inner = inner
        self.enabled = app.logs is None and app.rows is not None
        self.check_origin = bool(app.config.allow_origins)
        self._config: object = None
        self._sticky = b""
        self._versions: dict[int, tuple[bytes, bytes]] = {}  # x-model-version header by version number

    def sticky(self) -> bytes:
        """The canary's sticky header name (lower case bytes), from the current rollout config."""
        config = self.app.repo.config
        if config is not self._config:
            self._config = config
            self._sticky = config.model(self.app.name).sticky_header.encode("latin-1")
        return self._sticky

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        app = self.app
        if not (self.enabled and scope["path"] == "/predict_json" and scope["method"] == "POST" and app.inline):
            await self.inner(scope, receive, send)
            return
        start = _perf_counter()
        message = await receive()
        answer = None
        telemetry = app.telemetry
        config = app.config
        if (message["type"] == "http.request" and not message.get("more_body", False)
                and telemetry.inflight < config.max_concurrency):
            ctype = None
            client_key = None
            check_origin = self.check_origin
            sticky = self._sticky if app.repo.config is self._config else self.sticky()
            for key, value in scope["headers"]:
                if key == b"content-type":
                    ctype = value
                elif key == sticky:
                    client_key = value.decode("latin-1")
                elif key == b"origin" and check_origin:
                    ctype = None
                    break
            body = message.get("body", b"")
            if ctype == JSON_TYPE and len(body) <= config.max_body:
                try:
                    row = app.rows.quick_body(body)  # type: ignore[union-attr]
                    if row is not None:  # no log rows: this path runs without --log-dir
                        answer, pid, outcome = app.fast_one(row, client_key)
                except (InputError, Reply):
                    answer = None
                except (NotServed, DispatchError) as exc:  # answered by the inner app, not predicted twice
                    scope["edge.failed"] = exc
                    answer = None
        if answer is None:
            replay = [message]

            async def again() -> dict:
                return replay.pop() if replay else await receive()

            scope["edge.start"] = start
            await self.inner(scope, again, send)
            return
        telemetry.enter()
        try:
            n = len(answer)
            version = self._versions.get(outcome.version)
            if version is None:
                version = self._versions[outcome.version] = (b"x-model-version", b"%d" % outcome.version)
            protocol = scope.get(ANSWER_KEY)
            if protocol is not None:  # uvicorn's httptools protocol (EdgeProtocol): the same bytes in one write
                head = _HEAD % (n, version[1], pid, b"x-fallback: true\r\n" if outcome.fallback else b"")
                if _answer_whole(protocol, scope, head, answer):
                    return
            headers = [JSON_HEADER, _LENGTHS[n] if n < 512 else (b"content-length", b"%d" % n), version,
                       (b"x-prediction-id", pid)]
            if outcome.fallback:
                headers.append((b"x-fallback", b"true"))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": answer})
        finally:
            telemetry.leave_fast(_perf_counter() - start)
