"""Predictions are answered only once the start-up self-test passed (/readyz), unless --serve-unready."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.server import ServeConfig, build_app
from edge_helpers import rewrite_manifest
from test_edge_app import call

ROW = b"[6, 250, 66.5]"
TFS = b'{"instances": [[6, 250, 66.5]]}'


@pytest.fixture()
def failing_bundle(bundle_copy: Path) -> Path:
    """The golden outputs moved by 10: the self-test of every variant fails."""
    golden = json.loads((bundle_copy / "golden.json").read_text())
    golden["outputs"]["output_0"] = [[v + 10.0 for v in row] for row in golden["outputs"]["output_0"]]
    (bundle_copy / "golden.json").write_text(json.dumps(golden))
    rewrite_manifest(bundle_copy, lambda m: m)
    return bundle_copy


def _app(bundle: Path, **config):
    app = build_app(ServeConfig(bundle=str(bundle), **config))
    app.startup()
    return app


def test_an_unready_server_refuses_predictions_with_503(failing_bundle: Path) -> None:
    app = _app(failing_bundle)
    status, body = call(app, "GET", "/readyz")
    assert status == 503 and json.loads(body)["error"].startswith("self-test failed: medv: max error")
    for path, payload in (("/predict_json", ROW), ("/v1/models/boston_mlp:predict", TFS)):
        status, body = call(app, "POST", path, payload)
        answer = json.loads(body)
        assert status == 503 and answer["success"] is False
        assert answer["error"].startswith("not ready (self-test failed: medv: max error")
        assert answer["error"].endswith("predictions are refused until the self-test passes (see /readyz); "
                                        "start with --serve-unready to answer anyway")
    assert call(app, "GET", "/healthz")[0] == 200


def test_serve_unready_answers_anyway(failing_bundle: Path) -> None:
    app = _app(failing_bundle, serve_unready=True)
    assert call(app, "GET", "/readyz")[0] == 503
    status, body = call(app, "POST", "/predict_json", ROW)
    assert status == 200 and json.loads(body)["success"] is True


def test_a_ready_server_answers(bundle: Path) -> None:
    app = _app(bundle)
    assert call(app, "GET", "/readyz")[0] == 200
    assert call(app, "POST", "/predict_json", ROW)[0] == 200
