"""Hypothesis: random inputs inside the training range give fp32 parity in LiteRT for the Boston models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from convert import reference
from edge.tolerance import judge_outputs

pytestmark = pytest.mark.slow


def _rows(manifest: dict):
    features = manifest["features"]
    row = st.tuples(*[st.floats(min_value=f["min"], max_value=f["max"], allow_nan=False, width=32) for f in features])
    return st.lists(row, min_size=1, max_size=16)


@pytest.mark.parametrize("which", ["mlp", "linear"])
def test_fp32_litert_parity_inside_training_range(which: str, request, runners) -> None:
    model_path: Path = request.getfixturevalue(f"boston_{which}")
    bundle: Path = request.getfixturevalue(f"boston_{which}_bundle")
    manifest = json.loads((bundle / "manifest.json").read_text())
    [artifact] = [a for a in manifest["artifacts"] if a["format"] == "tflite" and a["variant"] == "float32"]
    keras_ref = reference.load(model_path)
    worker = runners.worker("litert")
    name = manifest["inputs"][0]["name"]

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rows=_rows(manifest))
    def check(rows) -> None:
        x = np.asarray(rows, dtype=np.float32)
        # the Keras model called directly (model.predict retraces per batch size and is ~50x slower here)
        ref = {keras_ref.outputs[0].key: np.asarray(keras_ref.keras_model(x, training=False))}
        reply = worker.request({"bundle": str(bundle), "artifact": artifact["path"], "inputs": {name: x.tolist()}})
        assert "error" not in reply, reply
        got = {k: np.asarray(v) for k, v in reply["outputs"].items()}
        verdict = judge_outputs(manifest, artifact["tolerance"], ref, got)
        assert verdict["passed"], (rows, verdict["failures"])

    check()
