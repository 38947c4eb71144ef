"""Handlers of the parts of the app imported on their first request, so that a plain bundle's start-up
imports only what its requests need: ``Later`` (the pages, OIP, feedback) and ``document_later``
(``/openapi.json``). Raises nothing itself; a handler raises what the part's handler raises."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.server.messages import Answer, Request
from edge.server.routing import Handler, Route

if TYPE_CHECKING:  # pragma: no cover
    from edge.server.app import EdgeApp


class Later:
    """The handlers of a part of the app that is imported on its first request (the pages, OIP, feedback):
    ``Later(app, "forms").form`` is a handler that awaits ``app.forms.form(request)``, ``app.forms`` being
    made then (``EdgeApp.forms``). A plain bundle's start-up so never imports what no request asked for."""

    def __init__(self, app: "EdgeApp", part: str) -> None:
        self.app = app
        self.part = part

    def __getattr__(self, method: str) -> Handler:
        """Raises: AttributeError: for a private or special name (not a handler)."""
        if method.startswith("_"):
            raise AttributeError(method)
        app, part = self.app, self.part

        async def handler(request: Request) -> Answer:
            return await getattr(getattr(app, part), method)(request)

        handler.__name__ = handler.__qualname__ = f"{part}.{method}"
        return handler


def document_later(app: "EdgeApp", table: list[Route]) -> Handler:
    """``GET /openapi.json``: ``edge.server.openapi``'s handler of ``table``, imported on the first request."""
    made: list[Handler] = []

    async def document(request: Request) -> Answer:
        if not made:
            from edge.server.openapi import handler

            made.append(handler(app, table))
        return await made[0](request)

    return document
