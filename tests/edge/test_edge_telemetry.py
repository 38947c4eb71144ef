"""edge.telemetry.Telemetry: queued one-row counts are exact at every read, in arrival order; the
in-flight gauge and the busy count (no bundle, no server)."""

from __future__ import annotations

import asyncio

import numpy as np

from edge.telemetry import Telemetry
from edge_helpers import metric

FEATURES = [{"name": "a", "min": 0.0, "max": 1.0, "reference_sample": [0.1, 0.5, 0.9]},
            {"name": "b", "min": 0.0, "max": 1.0, "reference_sample": [0.2, 0.4, 0.6]}]


def test_reads_flush_the_queue_themselves_in_arrival_order() -> None:
    t = Telemetry(FEATURES, drift_window=50)
    sent = []
    for i in range(7):  # one-row predictions queued, a batch between them
        t.queue_row([i / 10, 2.0])
        sent.append([i / 10, 2.0])
        if i == 3:
            batch = np.array([[0.5, 0.5], [-1.0, 0.5]])
            t.count_rows(batch)
            sent.extend(batch.tolist())
    assert np.array_equal(t.window_rows(), np.array(sent))
    assert t.state()["predictions"] == 9
    t.queue_row([0.3, 0.3])
    state = t.state()
    assert state["predictions"] == 10 and state["out_of_range"] == {"a": 1, "b": 7}
    text = asyncio.run(t.exposition({"model": "m"})).decode()
    assert metric(text, "deploykit_predictions_total") == 10
    assert metric(text, "deploykit_drift_window_rows") == 10


def test_fast_latencies_are_counted_and_inflight_is_bounded() -> None:
    t = Telemetry(FEATURES, drift_window=10)
    assert t.admit(2) and t.admit(2) and not t.admit(2)
    assert t.state()["inflight"] == 2 and t.state()["rejected_busy"] == 1
    t.leave()
    t.enter()
    t.queue_row([0.5, 0.5])
    t.leave_fast(0.0003)
    t.leave()
    state = t.state()
    assert state["inflight"] == 0
    assert state["requests"] == [["predict_json", 200, 1]] and state["hist"]["predict_json"][0] == 1


def test_queue_is_counted_every_tally_every_rows() -> None:
    t = Telemetry(FEATURES, drift_window=10)
    for _ in range(t.TALLY_EVERY - 1):
        t.queue_row([0.5, 0.5])
    assert t._metrics.predictions == 0  # still queued
    t.queue_row([0.5, 0.5])
    assert t._metrics.predictions == t.TALLY_EVERY


def test_names_from_the_bundle_reach_the_exposition_with_their_controls_escaped() -> None:
    """Feature and model names come from a manifest: an ESC in one went into /metrics as it was."""
    features = [{"name": "rm\x1b[2J", "min": 0.0, "max": 1.0, "reference_sample": [0.1, 0.5, 0.9]}]
    t = Telemetry(features, drift_window=10)
    t.queue_row([2.0])
    text = asyncio.run(t.exposition({"model": "m\x07"})).decode()
    assert "\x1b" not in text and "\x07" not in text
    assert metric(text, "deploykit_input_out_of_range_total", feature="rm\\x1b[2J") == 1
    assert metric(text, "deploykit_model_info", model="m\\x07") == 1
