"""edge.server.routing and the TF Serving path converters: which route a path reaches, with which
parameters (no bundle, no server)."""

from __future__ import annotations

import pytest

from edge.server.routing import Route, Router
from edge.server.tfserving import CONVERTERS, ModelRef


async def _handler(request):  # pragma: no cover - never called here
    raise AssertionError


def _router() -> Router:
    get, post = ("GET", "HEAD"), ("POST",)
    return Router([
        Route(post, "/predict_json", _handler, "predict_json", summary="predict"),
        Route(get, "/", _handler, "index", summary="index"),
        Route(post, "/v1/models/{model:tfs_model}:predict", _handler, "tfs_predict", summary="TF Serving predict"),
        Route(get, "/v1/models/{model:tfs_model}/metadata", _handler, "tfs_metadata", summary="TF Serving metadata"),
        Route(get, "/v1/models/{model:tfs_status}", _handler, "tfs_status", summary="TF Serving status"),
    ], CONVERTERS)


@pytest.mark.parametrize("path, route, ref", [
    ("/predict_json", "predict_json", None),
    ("/", "index", None),
    ("/v1/models/boston:predict", "tfs_predict", ModelRef("boston")),
    ("/v1/models/boston/versions/1:predict", "tfs_predict", ModelRef("boston", version="1")),
    ("/v1/models/boston/versions/2:predict", "tfs_predict", ModelRef("boston", version="2")),
    ("/v1/models/boston/labels/stable:predict", "tfs_predict", ModelRef("boston", label="stable")),
    ("/v1/models/a/labels/x/versions/2:predict", "tfs_predict", ModelRef("a/labels/x", version="2")),
    ("/v1/models/:predict", "tfs_predict", ModelRef("")),
    ("/v1/models/a/b:predict", "tfs_predict", ModelRef("a/b")),
    ("/v1/models/x/metadata:predict", "tfs_predict", ModelRef("x/metadata")),
    ("/v1/models/boston/metadata", "tfs_metadata", ModelRef("boston")),
    ("/v1/models/boston/versions/3/metadata", "tfs_metadata", ModelRef("boston", version="3")),
    ("/v1/models/x:predict/metadata", "tfs_metadata", ModelRef("x:predict")),
    ("/v1/models/boston", "tfs_status", ModelRef("boston")),
    ("/v1/models/boston/", "tfs_status", ModelRef("boston")),
    ("/v1/models//boston", "tfs_status", ModelRef("boston")),
    ("/v1/models///", "tfs_status", ModelRef("")),
    ("/v1/models/boston:classify", "tfs_status", ModelRef("boston:classify")),
    ("/v1/models/boston/versions/1", "tfs_status", ModelRef("boston", version="1")),
    ("/v1/models/boston/versions/7/", "tfs_status", ModelRef("boston", version="7")),
    ("/v1/models/a/versions/1/extra", "tfs_status", ModelRef("a", version="1/extra")),
    ("/v1/models/boston/labels/canary", "tfs_status", ModelRef("boston", label="canary")),
])
def test_paths_reach_their_route_with_parsed_parameters(path: str, route: str, ref: ModelRef | None) -> None:
    match = _router().match(path)
    assert match is not None and match.route.name == route
    assert match.params == ({} if ref is None else {"model": ref})


@pytest.mark.parametrize("path", ["/nope", "/v1/models/", "/v1/models/a/b", "/predict_json/", "/v1/model/x:predict"])
def test_paths_without_a_route(path: str) -> None:
    assert _router().match(path) is None


def test_static_paths_are_listed_and_bad_tables_refused() -> None:
    assert _router().static_paths() == ["/", "/predict_json"]
    with pytest.raises(ValueError, match=r"^unknown converter 'nope' in /x/\{a:nope\}$"):
        Router([Route(("GET",), "/x/{a:nope}", _handler, "x", summary="x")])
    with pytest.raises(ValueError, match="^two routes for /x$"):
        Router([Route(("GET",), "/x", _handler, "x", summary="x"), Route(("POST",), "/x", _handler, "y", summary="y")])
    with pytest.raises(ValueError, match=r"^route x \(/x\) has no summary for /openapi.json$"):
        Router([Route(("GET",), "/x", _handler, "x", summary=" ")])
