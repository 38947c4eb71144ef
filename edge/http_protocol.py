"""uvicorn's HTTP protocol with the server's limits, and JSON errors for what it refuses before the app.

uvicorn answers a request it cannot parse (bad framing such as ``Content-Length: -1``, broken chunked
encoding, an invalid header) by itself, before the app sees it, with a text/plain 400. ``EdgeProtocol``
answers it as JSON, ``{"success": false, "error": "..."}``, like every other error of ``deploykit-edge
serve``, and adds the limits uvicorn does not have (each a ``serve`` flag; defaults in ``Limits``):

* **431** when the head, from the request line to the blank line after the headers (a long URL included),
  passes ``max_header_bytes``, or has more than ``max_headers`` header lines, however its bytes arrive:
  the reads of an unfinished head are counted as they arrive (a huge header is refused after that many
  bytes, not buffered), and every parsed head is measured (``head_size``), so a head that arrives in one
  read is refused too; a refused pipelined request is answered after the requests before it (**414** for
  a URL over ``MAX_URL``, 64 KiB, which only a ``max_header_bytes`` over it lets through);
* **408** when the headers of a request (a new connection included) are not in after ``header_timeout``
  seconds, or its body after ``body_timeout`` seconds (the app's ``receive`` sees a disconnect; a request
  waiting for its body holds no ``--max-concurrency`` slot, ``edge.server.app``); idle keep-alive
  connections close after uvicorn's ``timeout_keep_alive``;
* **417** for an ``Expect`` other than ``100-continue``, and **413** for ``Expect: 100-continue`` with a
  ``Content-Length`` over ``max_body``: refused from the headers, before any of the body is invited;
* **503** for a new connection over ``max_connections`` when no open connection is idle; when one is
  (no request in progress: never used, keep-alive, or still sending its headers), the oldest idle one is
  closed instead, so that 500 idle sockets cannot keep ``/healthz`` out;
* on shutdown (SIGTERM), requests still waiting for their body ``STALL_MARGIN`` seconds before the graceful
  timeout ends are answered **503** JSON and closed, so the server exits in time, without a traceback.

Timeouts are checked by one sweep a second over the open connections (``SWEEP_SECONDS``): no timer per
request, nothing added to a request's path but a counter of header bytes. The h11 fallback (platforms
without httptools) keeps uvicorn's own limits (``h11_max_incomplete_event_size``) and the sweep.

Imported by ``edge.cli`` when it starts a server (it imports uvicorn); ``configure`` sets the limits in
each process (worker processes call it from ``edge.server.app.app_from_env``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from edge.limits import Limits
from edge.server.messages import ANSWER_KEY

try:  # uvicorn's fast parser (uvicorn's "auto" choice when httptools is installed)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:  # pragma: no cover - platforms without httptools wheels
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol

MALFORMED = ("malformed HTTP request (request line, headers, Content-Length or chunked encoding); "
             "send a well-formed HTTP/1.1 request")
MAX_URL = 65535  # the longest URL httptools.parse_url takes
_LONGEST_METHOD = 16  # over llhttp's longest method name (UNSUBSCRIBE)
SWEEP_SECONDS = 1.0
STALL_MARGIN = 2.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large", 414: b"URI Too Long", 417: b"Expectation Failed",
            431: b"Request Header Fields Too Large", 503: b"Service Unavailable"}


LIMITS = Limits()
_sweep: dict[str, Any] = {"handle": None, "connections": None, "shutdown_at": None}


def configure(limits: Limits) -> None:
    """Set the limits of this process's connections."""
    global LIMITS
    LIMITS = limits


def error_body(message: str) -> bytes:
    """The JSON error body, as the app writes errors."""
    return json.dumps({"success": False, "error": message}, separators=(",", ":")).encode()


BODY = error_body(MALFORMED)


class _Refused(Exception):
    """Raised inside a parser callback: answer ``status`` and close (the parser stops there)."""


def head_size(method: bytes, url: bytes, lines: int, text_bytes: int) -> int:
    """The bytes of a head written ``METHOD URL HTTP/1.1\\r\\n``, then ``lines`` headers as
    ``Name: value\\r\\n`` (``text_bytes``: the sum of their names' and values' lengths, as
    ``EdgeProtocol.on_header`` counts them), then the blank line."""
    return len(method) + len(url) + 12 + text_bytes + 4 * lines + 2


def body_over(content_length: bytes, limit: int) -> str | None:
    """The 413 message for a ``Content-Length`` of ASCII digits over ``limit`` bytes, else None (another value
    is the parser's to judge). A number longer than the limit's is not converted (``int`` refuses over 4300
    digits); the message shows at most 20 of its digits."""
    if not content_length.isdigit():
        return None
    digits = content_length.lstrip(b"0") or b"0"
    if len(digits) <= len(str(limit)) and int(digits) <= limit:
        return None
    shown = digits[:20].decode("ascii") + ("..." if len(digits) > 20 else "")
    return f"body of {shown} bytes is over the limit of {limit} bytes"


class EdgeProtocol(_Protocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol with ``Limits``; what it refuses gets a JSON answer, then the connection closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._read_bytes = 0  # the reads since the current head began that did not finish it
        self._head_bytes = 0  # the current head's header lines, as on_header parses them
        self._refusal: tuple[int, str, list[tuple[bytes, bytes]]] | None = None
        self._deferred: tuple[int, bytes, list[tuple[bytes, bytes]]] | None = None
        self._phase: tuple[str, int] | None = None
        self._phase_since = 0.0
        self._opened = 0.0

    # ------------------------------------------------------------------ connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._opened = self.loop.time()
        if _sweep["handle"] is None:
            _sweep["connections"] = self.connections
            _sweep["handle"] = self.loop.call_later(SWEEP_SECONDS, _run_sweep, self.loop)
        if len(self.connections) > LIMITS.max_connections:
            idle = [c for c in self.connections if c is not self and isinstance(c, EdgeProtocol) and c._idle()]
            if idle:
                min(idle, key=lambda c: c._opened).transport.close()
            else:
                self.refuse(503, f"too many open connections ({LIMITS.max_connections}); retry shortly",
                            [(b"retry-after", b"1")])

    def _idle(self) -> bool:
        """No request in progress (never used, keep-alive, or still sending its headers)."""
        cycle = self.cycle
        return (cycle is None or cycle.response_complete) and not self.transport.is_closing()

    def _busy(self) -> bool:
        """A request read earlier on this connection is not answered yet (the head being read is pipelined)."""
        cycle = self.cycle
        return cycle is not None and not cycle.response_complete

    def data_received(self, data: bytes) -> None:
        if self._deferred is not None:  # a refused pipelined head: nothing more is read
            return
        if self._in_head:
            self._read_bytes += len(data)
        super().data_received(data)
        if (self._in_head and self._read_bytes > LIMITS.max_header_bytes and self._refusal is None
                and self._deferred is None and not self.transport.is_closing()):
            self._refusal = (431, _over_header_bytes(), [])
            self.send_400_response("")

    # ------------------------------------------------------------------ parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        """Raises: _Refused: 417 for an ``Expect`` other than 100-continue; 431 past ``max_headers`` lines."""
        name = name.lower()
        if name == b"expect":
            if value.lower() == b"100-continue":
                self.expect_100_continue = True
            else:
                self._refusal = (417, f"Expect: {value[:40].decode('latin-1')} is not supported; "
                                      "send no Expect header or Expect: 100-continue", [])
                raise _Refused()
        headers = self.headers
        headers.append((name, value))
        if len(headers) > LIMITS.max_headers:
            self._refusal = (431, f"more than {LIMITS.max_headers} header lines", [])
            raise _Refused()
        self._head_bytes += len(name) + len(value)

    def on_headers_complete(self) -> None:
        """Raises: _Refused: 431 for a head over ``max_header_bytes`` (``head_size``), 414 for a URL over
        ``MAX_URL``, 413 for ``Expect: 100-continue`` with a ``Content-Length`` over ``max_body``."""
        counted, self._head_bytes, self._read_bytes = self._head_bytes, 0, 0
        bound = len(self.url) + counted + 4 * len(self.headers) + 14 + _LONGEST_METHOD  # >= head_size
        if bound > LIMITS.max_header_bytes or bound > MAX_URL:  # near a limit: measured exactly
            self._check_head(counted)
        if self.expect_100_continue:
            for name, value in self.headers:
                refusal = body_over(value, LIMITS.max_body) if name == b"content-length" else None
                if refusal is not None:
                    self._refusal = (413, refusal, [])
                    raise _Refused()
        super().on_headers_complete()
        self._in_head = False
        if _WHOLE:  # the protocol, not the cycle: the cycle holds the scope (no reference loop per request)
            self.scope[ANSWER_KEY] = self  # type: ignore[literal-required]

    def _check_head(self, text_bytes: int) -> None:
        """Raises: _Refused: 431 for a head over ``max_header_bytes`` (``head_size``), 414 for a URL over
        ``MAX_URL`` (only a ``max_header_bytes`` over it lets one through: httptools cannot parse it)."""
        if head_size(self.parser.get_method(), self.url, len(self.headers), text_bytes) > LIMITS.max_header_bytes:
            self._refusal = (431, _over_header_bytes(), [])
            raise _Refused()
        if len(self.url) > MAX_URL:
            self._refusal = (414, f"URL over {MAX_URL} bytes; send long inputs in the body", [])
            raise _Refused()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    def _answer_deferred(self) -> None:
        """The last request before a refused pipelined head is answered (its cycle's ``on_response``):
        uvicorn's ``on_response_complete``, then the refusal."""
        self.on_response_complete()
        if self._deferred is not None and not self.transport.is_closing():
            self._write_error(*self._deferred)

    # ------------------------------------------------------------------ answers

    def send_400_response(self, msg: str) -> None:
        """Answer what the parser refused (``_refusal``, else the malformed request's 400) and close; a
        pipelined head's answer waits until the requests before it are answered (reading stops meanwhile)."""
        if self._refusal is not None:
            status, message, extra = self._refusal
            answer = (status, error_body(message), extra)
        else:
            answer = (400, BODY, [])
        if self._in_head and self._busy():  # self.cycle is the last request read before this head
            self._deferred = answer
            self.cycle.on_response = self._answer_deferred
            self.flow.pause_reading()
        else:
            self._write_error(*answer)

    def _write_error(self, status: int, body: bytes, extra: list[tuple[bytes, bytes]]) -> None:
        content = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Error"))]
        for name, value in [*self.server_state.default_headers, *extra]:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(body),
                        b"connection: close\r\n", b"\r\n", body])
        self.transport.write(b"".join(content))
        self.transport.close()

    def refuse(self, status: int, message: str, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """Answer ``status`` now (unless a response has started), close, and tell the app its client is gone
        (``scope["edge.refused"]`` holds the status and message for its log)."""
        if self.transport.is_closing():
            return
        self._refusal = (status, message, extra or [])
        cycle = self.cycle
        started = False
        if cycle is not None and not cycle.response_complete:
            started = cycle.response_started
            cycle.scope["edge.refused"] = (status, message)  # type: ignore[typeddict-unknown-key]
            cycle.disconnected = True
            cycle.message_event.set()
            self.flow.resume_writing()
        if started:
            self.transport.close()
        else:
            self._write_error(status, error_body(message), extra or [])

    # ------------------------------------------------------------------ timeouts (the sweep)

    def _check(self, now: float) -> None:
        """Called by the sweep: answer 408 (or 503 on shutdown) when a phase of the request took too long."""
        if self.transport.is_closing():
            return
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            phase = "" if self.timeout_keep_alive_task is not None else "head"  # keep-alive: uvicorn's timer
        elif not cycle.response_started and cycle.more_body:
            phase = "body"
        else:
            phase = ""
        key = (phase, id(cycle))
        if key != self._phase:
            self._phase, self._phase_since = key, now
            return
        age = now - self._phase_since
        if phase == "head" and age >= LIMITS.header_timeout:
            self.refuse(408, f"request headers not received within {LIMITS.header_timeout:g} s")
        elif phase == "body" and age >= LIMITS.body_timeout:
            self.refuse(408, f"request body not received within {LIMITS.body_timeout:g} s")

    def _answer_stalled(self) -> None:
        """On shutdown, near the graceful timeout: a request still waiting for its body gets 503."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete or self.transport.is_closing():
            return
        if not cycle.response_started and cycle.more_body:
            self.refuse(503, "the server is shutting down; retry shortly", [(b"retry-after", b"1")])
        elif cycle.response_started and self.flow.write_paused:  # a client that does not read its answer
            self.refuse(503, "the server is shutting down")

    def shutdown(self) -> None:
        super().shutdown()
        if _sweep["shutdown_at"] is None:
            _sweep["shutdown_at"] = self.loop.time()
            delay = max(LIMITS.graceful_timeout - STALL_MARGIN, LIMITS.graceful_timeout / 2, 0.0)
            self.loop.call_later(delay, _answer_all_stalled)


def _over_header_bytes() -> str:
    return f"request line and headers over {LIMITS.max_header_bytes} bytes"


def _run_sweep(loop: asyncio.AbstractEventLoop) -> None:
    now = loop.time()
    for conn in list(_sweep["connections"] or ()):
        if isinstance(conn, EdgeProtocol):
            conn._check(now)
    _sweep["handle"] = loop.call_later(SWEEP_SECONDS, _run_sweep, loop)


def _answer_all_stalled() -> None:
    for conn in list(_sweep["connections"] or ()):
        if isinstance(conn, EdgeProtocol):
            conn._answer_stalled()


JsonErrorProtocol = EdgeProtocol  # the earlier name


_CYCLE_ATTRIBUTES = ("response_started", "response_complete", "disconnected", "keep_alive", "flow", "transport",
                     "default_headers", "access_log", "message_event", "on_response", "waiting_for_100_continue",
                     "chunked_encoding", "expected_content_length")


def _whole_possible() -> bool:
    """Whether uvicorn's httptools response cycle has the state ``answer_whole`` sets: every name is one its
    ``__init__`` assigns (its code's attribute names; uvicorn releases may rename them); False for h11."""
    if _Protocol.__name__ != "HttpToolsProtocol":  # pragma: no cover - no httptools
        return False
    try:
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError:  # pragma: no cover
        return False
    names = getattr(getattr(RequestResponseCycle.__init__, "__code__", None), "co_names", ())
    return all(name in names for name in _CYCLE_ATTRIBUTES)


_WHOLE = _whole_possible()


def answer_whole(protocol: Any, scope: dict, head: bytes, body: bytes) -> bool:
    """Write a whole answer (``head``: the status line and headers as uvicorn would write them, lower-case
    names, ending in the blank line; then ``body``, exactly ``content-length`` bytes) in one
    ``transport.write``, and finish the request as uvicorn's ``send`` does after the last body message; the
    bytes on the wire are those of the two ASGI messages (``edge.server.fastpath`` makes ``head``).
    False, with nothing done, when the answer must go through ASGI ``send`` instead: a response already
    started, a client gone, writing paused (the send waits for the drain), a connection to close after
    the answer (HTTP/1.0, ``Connection: close``), server default headers, an access log, or a protocol whose
    current cycle is another request's (a pipelined one read meanwhile)."""
    cycle = protocol.cycle
    if (cycle is None or cycle.scope is not scope or cycle.response_started or cycle.disconnected or not cycle.keep_alive or cycle.flow.write_paused
            or cycle.default_headers or cycle.access_log):
        return False
    cycle.response_started = True
    cycle.waiting_for_100_continue = False
    cycle.chunked_encoding = False
    cycle.expected_content_length = 0
    cycle.transport.write(head + body)
    cycle.response_complete = True
    cycle.message_event.set()
    cycle.on_response()
    return True
