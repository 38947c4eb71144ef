"""CORS as an ASGI middleware around the app: only the origins given with ``--allow-origin`` are answered.

A request from an allowed origin gets ``Access-Control-Allow-Origin`` (its origin) and ``Vary: Origin``
added to whatever the app answers. A preflight (``OPTIONS`` on a path the router knows; an unknown path
goes on to the app, which answers 404) is answered here: 204 with the route's methods for an allowed
origin, else 403. ``record`` is told of every preflight answered, so the app counts and logs it as it
does its own answers.
"""

from __future__ import annotations

import time
from typing import Callable

from edge.server.messages import JSON_TYPE, ASGIApp, Headers, Receive, Send, error_body
from edge.server.routing import Router

#: record(scope, route name, status, start): the app's accounting for an answer made outside it
Record = Callable[[dict, str, int, float], None]

_FORBIDDEN = error_body("origin not allowed; start the server with --allow-origin ORIGIN")


class CORSMiddleware:
    """See the module's docstring."""

    def __init__(self, app: ASGIApp, origins: list[str], router: Router, record: Record) -> None:
        self.app = app
        self.origins = {o.rstrip("/") for o in origins}
        self.router = router
        self.record = record

    def allow(self, headers: dict[bytes, bytes]) -> Headers:
        """The headers that let the request's origin read the answer (none when it is not allowed)."""
        origin = headers.get(b"origin")
        if origin and self.origins and origin.decode("latin-1").rstrip("/") in self.origins:
            return [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        return []

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            match = self.router.match(scope["path"])
            if match is not None:
                await self._preflight(scope, match.route.methods, send, match.route.name)
                return
        if not self.origins:
            await self.app(scope, receive, send)
            return
        cors = self.allow(dict(scope["headers"]))
        if not cors:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: dict) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": list(message.get("headers", [])) + cors}
            await send(message)

        await self.app(scope, receive, send_with_cors)

    async def _preflight(self, scope: dict, methods: tuple[str, ...], send: Send, route: str) -> None:
        start = scope.get("edge.start") or time.perf_counter()
        headers = dict(scope["headers"])
        cors = self.allow(headers)
        status = 500
        try:
            if not cors:
                await send({"type": "http.response.start", "status": 403,
                            "headers": [(b"content-type", JSON_TYPE), (b"content-length", str(len(_FORBIDDEN)).encode())]})
                await send({"type": "http.response.body", "body": _FORBIDDEN})
                status = 403
                return
            allow_headers = headers.get(b"access-control-request-headers", b"content-type")
            out = cors + [(b"access-control-allow-methods", ", ".join(methods).encode()),
                          (b"access-control-allow-headers", allow_headers), (b"access-control-max-age", b"600"),
                          (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 204, "headers": out})
            await send({"type": "http.response.body", "body": b""})
            status = 204
        finally:
            self.record(scope, route, status, start)
