"""`dynamic` runs on tflite-runtime 2.14: per-tensor Dense weights (FULLY_CONNECTED v9), unless per-tensor misses
the quantized bound, then per-channel (v12, TFLite >= 2.17) and the manifest declares it LiteRT-only."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from convert.parity.engine import verify_bundle
from convert.tflite import Variant, convert_variant, representative
from edge import interpreter as it
from edge import tflite_file
from edge import manifest as mf
from tests.helpers import run_cli

pytestmark = pytest.mark.slow


def _wide(out: Path) -> tuple[Path, Path]:
    """Dense 64 -> 32 -> 1 on 20 features: kernels of 1,280 and 2,048 values (dynamic quantizes >= 1,024)."""
    import keras
    import pandas as pd

    keras.utils.set_random_seed(1)
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(600, 20)) * rng.uniform(0.5, 3, size=20)).astype("float32")
    y = (x[:, :5].sum(1) + 2 * np.sin(x[:, 5])).astype("float32")
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(64, activation="relu"),
                              keras.layers.Dense(32, activation="relu"), keras.layers.Dense(1)])
    model.compile("adam", "mse")
    model.fit(x, y, epochs=30, verbose=0)
    model.save(out / "wide.keras")
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(20)])
    frame["y"] = y
    frame.to_csv(out / "wide.csv", index=False)
    return out / "wide.keras", out / "wide.csv"


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    work = tmp_path_factory.mktemp("wide")
    model, data = _wide(work)
    out = work / "bundle"
    r = run_cli("convert", model, "--data", data, "--target", "y", "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    return out, model


def test_wide_dynamic_is_per_tensor_and_passes_on_tflite_runtime_2_14(wide_bundle, runners) -> None:
    bundle, model = wide_bundle
    manifest = mf.load(bundle)
    [dynamic] = [a for a in manifest["artifacts"] if a["variant"] == "dynamic"]
    assert dynamic["runtime"]["ops"] == [{"name": "FULLY_CONNECTED", "version": 9}]
    assert tflite_file.parse_version(dynamic["runtime"]["min_tflite_runtime"]) <= (2, 14, 0)
    assert "per-channel" not in dynamic["note"]
    report = verify_bundle(bundle, model=model, runtimes="litert,tflite-runtime", runners=runners, save=False)
    results = {r.runtime: r for r in report.results if r.artifact == dynamic["path"]}
    assert sorted(results) == ["litert", "tflite-runtime"]
    for runtime, result in results.items():
        assert result.error == "" and result.passed, (runtime, result.failures)
        assert result.runtime_version == {"litert": "2.3.0", "tflite-runtime": "2.14.0"}[runtime]
        # the Dense weights are really quantized: the error is quantization-sized, not float32 noise
        assert 1e-4 < max(g["range_fraction"] for g in result.golden.values()) <= 0.01


def _two_scale_saved_model(work: Path) -> Path:
    """A Dense 20 -> 64 whose second 32 channels are 100x smaller (the head reads them 100x larger): one scale
    per kernel rounds them to a few levels."""
    import keras

    keras.utils.set_random_seed(3)
    x = keras.Input((20,), name="x")
    model = keras.Model(x, keras.layers.Dense(1, name="head")(keras.layers.Dense(64, activation="relu", name="h")(x)))
    kernel, bias = model.get_layer("h").get_weights()
    kernel[:, 32:] *= 0.01
    bias[32:] *= 0.01
    model.get_layer("h").set_weights([kernel, bias])
    head, head_bias = model.get_layer("head").get_weights()
    head[32:] *= 100
    model.get_layer("head").set_weights([head, head_bias])
    model.export(str(work / "saved_model"), verbose=False)
    return work / "saved_model"


def test_per_channel_when_per_tensor_misses_the_bound(tmp_path: Path) -> None:
    saved = _two_scale_saved_model(tmp_path)
    rows = np.random.default_rng(0).normal(size=(600, 20)).astype("float32")
    calibration = representative({"x": rows}, {"x": "float32"})
    result = convert_variant(saved, Variant.DYNAMIC, tmp_path / "model.dynamic.tflite", calibration)
    assert result.error is None
    assert result.ops == [{"name": "FULLY_CONNECTED", "version": 12}]
    # measured: per-tensor 24.3% of the output range, per-channel 0.567%
    match = re.fullmatch(r"LiteRT only: per-channel Dense weights \(FULLY_CONNECTED version 12 needs TFLite >= 2\.17\); "
                         r"per-tensor missed the bound on the calibration rows \(([\d.]+)% of the output range vs "
                         r"([\d.]+)% per-channel\)", result.note)
    assert match, result.note
    assert float(match.group(1)) > 10 and float(match.group(2)) < 1
    assert tflite_file.tflite_min_runtime(result.path) == "2.17.0"
    artifact = {"path": "edge/model.dynamic.tflite", "runtime": {"min_tflite_runtime": "2.17.0"}}
    ok, reason = it.can_run(artifact, "tflite_runtime", "2.14.0")
    assert not ok and reason.startswith("edge/model.dynamic.tflite needs TFLite runtime >= 2.17.0, the installed "
                                        "interpreter is tflite_runtime 2.14.0")
    assert it.can_run(artifact, "ai_edge_litert", "2.3.0")[0]


def test_per_tensor_without_calibration_rows(tmp_path: Path) -> None:
    saved = _two_scale_saved_model(tmp_path)
    result = convert_variant(saved, Variant.DYNAMIC, tmp_path / "model.dynamic.tflite", None)
    assert result.ops == [{"name": "FULLY_CONNECTED", "version": 9}] and result.note == ""


def test_per_tensor_kept_when_per_channel_misses_too(tmp_path: Path) -> None:
    """An untrained Conv1D regressor on N(0, 1) rows: neither weight layout holds 1% of range (measured 1.68% and
    1.21%), so the variant stays runnable everywhere and its note gives both numbers."""
    import keras

    keras.utils.set_random_seed(0)
    layers = keras.layers
    model = keras.Sequential([keras.Input((32, 4), name="x"), layers.Conv1D(32, 3, activation="relu"),
                              layers.Conv1D(64, 3, activation="relu"), layers.GlobalAveragePooling1D(),
                              layers.Dense(64, activation="relu"), layers.Dense(1)])
    model.export(str(tmp_path / "saved_model"), verbose=False)
    rows = np.random.default_rng(0).normal(size=(300, 32, 4)).astype("float32")
    result = convert_variant(tmp_path / "saved_model", Variant.DYNAMIC, tmp_path / "model.dynamic.tflite",
                             representative({"x": rows}, {"x": "float32"}))
    assert {"name": "FULLY_CONNECTED", "version": 9} in result.ops
    match = re.fullmatch(r"per-tensor Dense weights miss the bound on the calibration rows \(([\d.]+)% of the output "
                         r"range\); per-channel too \(([\d.]+)%\)", result.note)
    assert match, result.note
    assert float(match.group(1)) > 1 and float(match.group(2)) > 1
