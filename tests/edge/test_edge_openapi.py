"""edge.server.openapi: /openapi.json is made from the route table, so every route is documented and the
document lists no route the server lacks (in-process, no server; the schemathesis run drives a real one)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from edge.server import EdgeApp, ServeConfig, build_app
from edge.server.openapi import DOCUMENTED_BY, openapi
from edge.server.routing import Route
from edge_helpers import acall


@pytest.fixture(scope="module")
def app(bundle: Path) -> EdgeApp:
    return build_app(ServeConfig(bundle=str(bundle)))


def _document(app: EdgeApp) -> dict:
    status, body = asyncio.run(acall(app, "GET", "/openapi.json"))
    assert status == 200
    return json.loads(body)


def _operations(app: EdgeApp) -> set[tuple[str, str]]:
    """(document path, method) of every route of the table, the served model's name filled in."""
    found = set()
    for route in app.router.routes:
        if route.response in DOCUMENTED_BY:
            continue
        path = route.pattern.replace("{model:tfs_model}", app.name).replace("{model:tfs_status}", app.name)
        path = path.replace("{name}", app.name)
        found |= {(path, method.lower()) for method in route.methods if method != "HEAD"}
    return found


def test_every_route_is_documented_and_every_documented_path_is_a_route(app: EdgeApp) -> None:
    doc = _document(app)
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert documented == _operations(app)
    assert len(documented) == 24  # the 25 routes less :classify (not an image model), one method each
    for route in app.router.routes:
        if route.response not in DOCUMENTED_BY:
            assert route.summary in {op["summary"] for ops in doc["paths"].values() for op in ops.values()}


def test_a_version_stays_a_path_parameter(app: EdgeApp) -> None:
    op = _document(app)["paths"][f"/v2/models/{app.name}/versions/{{version}}/infer"]["post"]
    assert op["parameters"] == [{"name": "version", "in": "path", "required": True,
                                 "schema": {"type": "string", "pattern": "^[0-9]{1,9}$"}}]
    assert op["requestBody"] == _document(app)["paths"][f"/v2/models/{app.name}/infer"]["post"]["requestBody"]


def test_classify_is_left_to_its_module_and_absent_for_a_tabular_model(app: EdgeApp) -> None:
    classify = [r for r in app.router.routes if r.name == "classify"]
    assert [r.response for r in classify] == ["classify"] and "classify" in DOCUMENTED_BY
    assert not any(p.endswith(":classify") for p in _document(app)["paths"])


def test_a_route_the_catalog_cannot_describe_fails_the_document(app: EdgeApp) -> None:
    async def handler(request):  # pragma: no cover - never called
        raise AssertionError

    table = [*app.router.routes, Route(("GET",), "/new", handler, "new", summary="New.", response="nope")]
    with pytest.raises(KeyError, match="nope"):
        openapi(app.p, app.config, app.name, table)
