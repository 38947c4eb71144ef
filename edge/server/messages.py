"""What every part of the server shares: the ASGI callables' types, a request as handlers see it, the
answer tuple, the ``Reply`` exception that answers an error, JSON writing and the request body reader."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

try:  # optional (serve extra): formats a float faster than repr
    import orjson as _orjson
except ImportError:  # pragma: no cover
    _orjson = None

Send = Callable[[dict], Awaitable[None]]
Receive = Callable[[], Awaitable[dict]]
ASGIApp = Callable[[dict, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
Answer = tuple[int, bytes, bytes, Headers]  # (status, content type, body, extra headers)

#: the scope key under which ``edge.http_protocol.EdgeProtocol`` puts itself, for the fast path's one-write
#: answer (``edge.http_protocol.answer_whole``)
ANSWER_KEY = "edge.answer"
JSON_TYPE = b"application/json"
HTML_TYPE = b"text/html; charset=utf-8"
JSON_HEADER = (b"content-type", JSON_TYPE)


def utc_now() -> str:
    """The time a log line is written: ISO 8601 UTC with milliseconds (``2026-12-01T16:09:47.123Z``)."""
    wall = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"


class Reply(Exception):
    """Answer now with this status and message (as the JSON error body)."""

    def __init__(self, status: int, message: str, headers: Optional[Headers] = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers or []


@dataclass
class Request:
    """One request as a handler sees it: the ASGI scope and receive, the headers as a dict, the path
    parameters the router parsed, the prediction-log rows the handler adds (written by the app) and the
    outcomes whose shadow jobs run after the answer is sent."""

    scope: dict
    receive: Receive
    headers: dict[bytes, bytes]
    params: dict[str, Any] = field(default_factory=dict)
    log_rows: list[list[Any]] = field(default_factory=list)


def json_bytes(obj: Any) -> bytes:
    """Compact JSON, refusing NaN and infinities (ValueError)."""
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode("utf-8")


def json_float(value: float) -> bytes:
    """A finite float's JSON text exactly as ``json.dumps`` writes it (``repr``): orjson's for
    1e-4 <= |value| < 1e16 and zero, where the two texts are the same; repr's elsewhere (orjson writes
    1e-5 where repr writes 1e-05)."""
    if _orjson is not None and (1e-4 <= value < 1e16 or -1e16 < value <= -1e-4 or value == 0.0):
        return _orjson.dumps(value)
    return repr(value).encode()


def error_body(message: str) -> bytes:
    """The JSON error body every route answers with."""
    return json_bytes({"success": False, "error": message})


async def read_body(request: Request, accept: tuple[bytes, ...], limit: int) -> bytes:
    """The request body, after the content-type and size checks.

    Raises:
        Reply: 415 for a content type not in ``accept`` or a Content-Encoding (gzip, ...), 413 over ``limit`` bytes (chunked included), 400
            for an invalid Content-Length or a client that left, or what the HTTP layer refused it with.
    """
    headers, receive = request.headers, request.receive
    ctype = headers.get(b"content-type", b"")
    if ctype not in accept:
        ctype = ctype.split(b";", 1)[0].strip().lower()
    if ctype not in accept:
        shown = ctype[:60].decode("latin-1") or "none"
        raise Reply(415, f"content type {shown} is not supported; send Content-Type: {accept[0].decode()}")
    encoding = headers.get(b"content-encoding")
    if encoding is not None and encoding.strip().lower() not in (b"", b"identity"):
        shown = encoding[:40].decode("latin-1")
        raise Reply(415, f"Content-Encoding {shown} is not supported; send the body uncompressed")
    declared = headers.get(b"content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise Reply(413, f"body of {int(declared)} bytes is over the limit of {limit} bytes")
        except ValueError:
            raise Reply(400, "invalid Content-Length") from None
    message = await receive()
    if message["type"] == "http.request" and not message.get("more_body", False):  # the whole body at once
        body = message.get("body", b"")
        if len(body) > limit:
            raise Reply(413, f"body is over the limit of {limit} bytes")
        return body
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            if message["type"] == "http.disconnect":
                refused = request.scope.get("edge.refused")  # the protocol answered it (408 body timeout, 503)
                raise Reply(*refused) if refused else Reply(400, "client disconnected")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise Reply(413, f"body is over the limit of {limit} bytes")
            BODIES.take(len(chunk))
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)
            message = await receive()
    finally:
        BODIES.give(sum(map(len, chunks)))


class BodyBudget:
    """The bytes of request bodies that arrive in parts and are being read, all requests of the process
    together, under ``limit`` (``BODY_BUDGET``): a request whose next part would pass it is answered 503. Each
    body is bounded by ``--max-body``, but slow clients no longer hold a concurrency slot while they send
    (``edge.server.slot``), so without a sum 250 of them held 250 MiB. A body that came whole (the usual
    case: small, or sent fast) is not counted: it is already read."""

    def __init__(self, limit: int) -> None:
        self.limit, self.held = limit, 0

    def take(self, n: int) -> None:
        """Count ``n`` more bytes held. Raises: Reply: 503 when they would pass the limit."""
        if self.held + n > self.limit:
            raise Reply(503, f"busy: {self.held:,} bytes of request bodies are being received; retry shortly",
                        [(b"retry-after", b"1")])
        self.held += n

    def give(self, n: int) -> None:
        """``n`` bytes are no longer held (the body was joined, refused or left)."""
        self.held = max(0, self.held - n)


BODY_BUDGET = 64 * 1024 * 1024
BODIES = BodyBudget(BODY_BUDGET)


def outcome_headers(outcome: Any) -> list[tuple[bytes, bytes]]:
    """The headers every prediction answer carries: the version that answered, the id(s), the fallback."""
    headers = [(b"x-model-version", b"%d" % outcome.version),
               (b"x-prediction-id", outcome.ids[0].encode() if len(outcome.ids) == 1 else b",".join(i.encode() for i in outcome.ids[:100]))]
    if outcome.fallback:
        headers.append((b"x-fallback", b"true"))
    return headers


def logged_error(body: bytes) -> str:
    """The ``"error"`` of a JSON error body a handler answered with (the request log's error column). Raises nothing."""
    try:
        message = json.loads(body).get("error")
    except (ValueError, AttributeError, RecursionError):
        return ""
    return message if isinstance(message, str) else ""
