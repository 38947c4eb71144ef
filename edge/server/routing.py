"""The route table: ``Route(methods, pattern, handler, name, summary=...)`` objects, and the ``Router`` that
matches a path to one of them and parses its parameters. Each route also carries its documentation (a summary,
and the names of its request body and answers in ``edge.server.openapi``'s catalog): ``/openapi.json`` is made
from the table, and the router refuses a route without a summary.

A pattern is a path with ``{name}`` or ``{name:converter}`` parameters. A converter is a regular
expression for the parameter's text and a function that turns the text into the handler's value; the
TF Serving adapter (``edge.server.tfserving``) brings its own, which parse ``NAME[/versions/N|/labels/L]``
into a ``ModelRef``. Paths without parameters are looked up in a dict; the others are tried in the
table's order, and the first whose pattern matches the whole path wins. The router matches paths only:
the app answers 405 (with ``Allow``) when the method is not one of the route's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional, Sequence

from edge.server.messages import Answer, Request

Handler = Callable[[Request], Awaitable[Answer]]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z_][A-Za-z0-9_]*))?\}")


@dataclass(frozen=True)
class Converter:
    """A path parameter's text (``regex``, matched whole) and its value (``convert(text)``)."""

    regex: str
    convert: Callable[[str], Any] = str


CONVERTERS: dict[str, Converter] = {"str": Converter("[^/]+"), "path": Converter(".*")}


@dataclass(frozen=True)
class Route:
    """One entry of the table.

    ``limited``: counted against ``--max-concurrency`` (health and metrics are not). ``predicts``: refused
    with 503 until the self-test passed. ``error_page``: the route answers its errors as HTML, made from
    the message by this function (the form), instead of the JSON error body. ``summary``: its line in
    /openapi.json; ``request`` and ``response``: the names of its request body (None: it takes none) and of its
    answers (every status, with its body) in ``edge.server.openapi.catalog``.
    """

    methods: tuple[str, ...]
    pattern: str
    handler: Handler
    name: str
    limited: bool = True
    predicts: bool = False
    error_page: Optional[Callable[[str], bytes]] = None
    summary: str = ""
    request: Optional[str] = None
    response: str = "object"

    @property
    def static(self) -> bool:
        return _PARAM.search(self.pattern) is None


@dataclass
class Match:
    """The route a path matched and its parsed parameters."""

    route: Route
    params: dict[str, Any] = field(default_factory=dict)


class Router:
    """Matches paths against a route table (see the module's docstring).

    Raises:
        ValueError: (at construction) a pattern names an unknown converter, two static routes share a path, or a
            route has no summary (it would be missing from /openapi.json).
    """

    def __init__(self, routes: Sequence[Route], converters: Optional[dict[str, Converter]] = None) -> None:
        self.routes = list(routes)
        converters = {**CONVERTERS, **(converters or {})}
        self._static: dict[str, Match] = {}
        self._dynamic: list[tuple[re.Pattern[str], dict[str, Converter], Route]] = []
        for route in self.routes:
            if not route.summary.strip():
                raise ValueError(f"route {route.name} ({route.pattern}) has no summary for /openapi.json")
            if route.static:
                if route.pattern in self._static:
                    raise ValueError(f"two routes for {route.pattern}")
                self._static[route.pattern] = Match(route)
                continue
            regex, used, at = "", {}, 0
            for m in _PARAM.finditer(route.pattern):
                name, kind = m.group(1), m.group(2) or "str"
                if kind not in converters:
                    raise ValueError(f"unknown converter {kind!r} in {route.pattern}")
                used[name] = converters[kind]
                regex += re.escape(route.pattern[at : m.start()]) + f"(?P<{name}>{converters[kind].regex})"
                at = m.end()
            regex += re.escape(route.pattern[at:])
            self._dynamic.append((re.compile(regex, re.DOTALL), used, route))

    def match(self, path: str) -> Optional[Match]:
        """The first route whose pattern matches all of ``path``, with its parameters; None when none does."""
        found = self._static.get(path)
        if found is not None:
            return found
        for regex, used, route in self._dynamic:
            m = regex.fullmatch(path)
            if m is not None:
                return Match(route, {k: used[k].convert(v) for k, v in m.groupdict().items()})
        return None

    def static_paths(self) -> list[str]:
        """The paths of the routes without parameters, sorted."""
        return sorted(self._static)
