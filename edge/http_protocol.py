"""uvicorn's HTTP protocol with the server's limits, and JSON errors for what it refuses before the app.

uvicorn answers a request it cannot parse (bad framing such as ``Content-Length: -1``, broken chunked
encoding, an invalid header) by itself, before the app sees it, with a text/plain 400. ``EdgeProtocol``
answers it as JSON, ``{"success": false, "error": "..."}``, like every other error of ``deploykit-edge
serve``, and adds the limits uvicorn does not have (each a ``serve`` flag; defaults in ``Limits``):

* **431** when the request line and headers pass ``max_header_bytes`` (counted as they arrive, so a huge
  header is refused after that many bytes, not buffered) or ``max_headers`` header lines;
* **408** when the headers of a request (a new connection included) are not in after ``header_timeout``
  seconds, or its body after ``body_timeout`` seconds (the app's concurrency slot is freed: its
  ``receive`` sees a disconnect); idle keep-alive connections close after uvicorn's ``timeout_keep_alive``;
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
SWEEP_SECONDS = 1.0
STALL_MARGIN = 2.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 413: b"Content Too Large", 417: b"Expectation Failed",
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


class EdgeProtocol(_Protocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol with ``Limits``; what it refuses gets a JSON answer, then the connection closes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0
        self._refusal: tuple[int, str, list[tuple[bytes, bytes]]] | None = None
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

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and self._head_bytes > LIMITS.max_header_bytes and self._refusal is None:
            self.refuse(431, f"request line and headers over {LIMITS.max_header_bytes} bytes")

    # ------------------------------------------------------------------ parser callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
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

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        if self.expect_100_continue:
            for name, value in self.headers:
                if name == b"content-length" and value.isdigit() and int(value) > LIMITS.max_body:
                    self._refusal = (413, f"body of {int(value)} bytes is over the limit of {LIMITS.max_body} bytes", [])
                    raise _Refused()
        super().on_headers_complete()
        if _WHOLE:  # the protocol, not the cycle: the cycle holds the scope (no reference loop per request)
            self.scope[ANSWER_KEY] = self  # type: ignore[literal-required]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True

    # ------------------------------------------------------------------ answers

    def send_400_response(self, msg: str) -> None:
        if self._refusal is not None:
            status, message, extra = self._refusal
            self._write_error(status, error_body(message), extra)
        else:
            self._write_error(400, BODY, [])

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
