"""uvicorn's HTTP protocol, with the server's JSON error for a request the HTTP parser rejects.

uvicorn answers a request it cannot parse (bad framing such as ``Content-Length: -1``, broken chunked
encoding, an invalid header) by itself, before the app sees it, with a text/plain 400. ``JsonErrorProtocol``
answers the same 400 as JSON, ``{"success": false, "error": "..."}``, like every other error of
``deploykit-edge serve``. Only that answer changes: requests the parser accepts take uvicorn's own path.

Imported by ``edge.cli`` when it starts a server (it imports uvicorn).
"""

from __future__ import annotations

import json

try:  # uvicorn's fast parser (uvicorn's "auto" choice when httptools is installed)
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Protocol
except ImportError:  # pragma: no cover - platforms without httptools wheels
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Protocol

MALFORMED = ("malformed HTTP request (request line, headers, Content-Length or chunked encoding); "
             "send a well-formed HTTP/1.1 request")
BODY = json.dumps({"success": False, "error": MALFORMED}, separators=(",", ":")).encode()  # as the app writes errors


class JsonErrorProtocol(_Protocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol; a request its parser rejects gets a JSON 400, then the connection closes."""

    def send_400_response(self, msg: str) -> None:
        content = [b"HTTP/1.1 400 Bad Request\r\n"]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([b"content-type: application/json\r\n", b"content-length: %d\r\n" % len(BODY),
                        b"connection: close\r\n", b"\r\n", BODY])
        self.transport.write(b"".join(content))
        self.transport.close()
