"""edge.server.app.EdgeApp called in-process through ASGI: its bookkeeping (metrics, drift window) is exact.

The HTTP behaviour is tested against a real uvicorn server on loopback in test_edge_server.py; these
tests call the app directly to check counts and the drift window's order after many requests.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.server import EdgeApp, ServeConfig, build_app
from edge_helpers import acall, metric


def call(app: EdgeApp, method: str, path: str, body: bytes = b"") -> tuple[int, bytes]:
    """One request through the ASGI interface; (status, body)."""
    return asyncio.run(acall(app, method, path, body))


@pytest.fixture(scope="module")
def app_factory(bundle: Path):
    def make(window: int) -> EdgeApp:
        app = build_app(ServeConfig(bundle=str(bundle), drift_window=window))
        app.startup()  # what uvicorn's lifespan does: the self-test, then predictions are answered
        return app
    return make


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=40), st.integers(1, 300))
def test_one_row_and_batch_requests_land_in_the_window_in_order(app_factory, batches: list[int], window: int) -> None:
    """Rows answered one at a time are queued and counted in bulk; batches in between, the request
    counts, the out-of-range counts and the drift window (order included) are exactly those of the
    rows as they arrived."""
    app = app_factory(window)
    rng = np.random.default_rng(len(batches) * 1000 + window)
    sent_rows: list[list[float]] = []
    singles = 0
    for k in batches:
        if k == 0:  # a one-row request (the short path)
            row = [round(float(v), 3) for v in rng.uniform([3, 150, 2], [9, 750, 100])]
            status, _ = call(app, "POST", "/predict_json", json.dumps(row).encode())
            sent_rows.append(row)
            singles += 1
        else:
            rows = [[round(float(v), 3) for v in r] for r in rng.uniform([3, 150, 2], [9, 750, 100], size=(k, 3))]
            status, _ = call(app, "POST", "/predict_json", json.dumps(rows).encode())
            sent_rows.extend(rows)
        assert status == 200
    for _ in range(app.TALLY_EVERY + 3):  # past one queue flush, and a partial queue behind it
        row = [6.0, 250.0, 66.5]
        call(app, "POST", "/predict_json", json.dumps(row).encode())
        sent_rows.append(row)
        singles += 1
    status, body = call(app, "GET", "/drift")
    assert status == 200 and json.loads(body)["n"] == min(len(sent_rows), window)
    assert np.array_equal(app.telemetry.window_rows(), np.array(sent_rows)[-window:])
    status, body = call(app, "GET", "/metrics")
    text = body.decode()
    assert metric(text, "deploykit_predictions_total") == len(sent_rows)
    assert metric(text, "deploykit_requests_total", route="predict_json", status="200") == len(batches) + app.TALLY_EVERY + 3
    x = np.array(sent_rows)
    for i, f in enumerate(app.features):
        out = int(((x[:, i] < f["min"]) | (x[:, i] > f["max"])).sum())
        assert metric(text, "deploykit_input_out_of_range_total", feature=f["name"]) == out
    assert singles == batches.count(0) + app.TALLY_EVERY + 3


def test_far_drift_is_reported_not_a_500(app_factory) -> None:
    """Inputs a million away from the training sample: `/metrics` and `/drift` answered 500
    (OverflowError: math range error) before the p-values were computed as an outside count."""
    app = app_factory(200)
    rows = [[6.0 + i * 1e-3, 1e6 + i, 66.5] for i in range(200)]
    assert call(app, "POST", "/predict_json", json.dumps(rows).encode())[0] == 200
    status, body = call(app, "GET", "/drift")
    assert status == 200, body
    tax = {f["feature"]: f for f in json.loads(body)["features"]}["tax"]
    assert tax["statistic"] == 1.0 and tax["drifted"] is True and 0.0 < tax["p_value"] < 1e-100
    status, body = call(app, "GET", "/metrics")
    assert status == 200 and metric(body.decode(), "deploykit_drift_detected", feature="tax") == 1


def test_errors_a_handler_answers_are_in_the_request_log(bundle: Path, tmp_path: Path) -> None:
    """The Open Inference Protocol's and the feedback route's errors are answered, not raised: their line in
    requests.csv had an empty error column."""
    import csv

    app = build_app(ServeConfig(bundle=str(bundle), log_dir=str(tmp_path)))
    app.startup()
    try:
        assert call(app, "POST", "/v2/models/boston_mlp/infer", b"{")[0] == 400
        assert call(app, "POST", "/v1/models/boston_mlp/feedback", b'{"id": "nope", "truth": 1}')[0] == 404
    finally:
        app.shutdown()
    rows = list(csv.DictReader((tmp_path / "requests.csv").open(newline="")))
    assert [(r["status"], r["error"]) for r in rows] == [
        ("400", "the request is not valid JSON (Expecting property name enclosed in double quotes at line 1 column 2)"),
        ("404", "prediction nope is unknown (not issued by this server since it started)")]
