"""convert measures the reference's own float32 noise (a float64 run of the same Keras model) and records it
per output; a SavedModel source gets none and a note; the float16 artifact gets convert's verdict from its twin."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from convert.reference_noise import MAX_NOISE, float64_config, measure
from edge import manifest as manifest_mod
from tests.helpers import BOSTON_CSV, run_cli

SAVED_MODEL_NOTE = ("reference noise not measured: the source is a SavedModel, with no Keras layers to run in "
                    "float64; the plain float32 bound applies")


def test_the_cap_is_the_documented_one() -> None:
    assert MAX_NOISE == 1e-3
    schema = manifest_mod.schema()
    assert '"maximum": 0.001' in json.dumps(schema)


def test_float64_config_changes_float_dtypes_only() -> None:
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"}, "registered_name": None}
    config = {"layers": [
        {"class_name": "InputLayer", "config": {"dtype": "float32", "name": "x"}},
        {"class_name": "InputLayer", "config": {"dtype": "int32", "name": "tokens"}},
        {"class_name": "Dense", "config": {"dtype": policy, "units": 3}},
        {"class_name": "Functional", "config": {"layers": [{"class_name": "Dense", "config": {"dtype": "mixed_float16"}}]}},
    ]}
    out = float64_config(config)
    assert out["layers"][0]["config"]["dtype"] == "float64"
    assert out["layers"][1]["config"]["dtype"] == "int32"
    assert out["layers"][2]["config"]["dtype"]["config"] == {"name": "float64"}
    assert out["layers"][3]["config"]["layers"][0]["config"]["dtype"] == "float64"
    assert policy["config"]["name"] == "float32", "the model's own config is not changed"


def test_a_keras_model_gets_its_noise_and_a_layer_that_breaks_gets_a_note() -> None:
    import keras

    keras.utils.set_random_seed(1)
    inp = keras.Input((3,), name="features")
    model = keras.Model(inp, keras.layers.Dense(2)(keras.layers.Dense(16, activation="tanh")(inp)))
    spec = SimpleNamespace(name="features", dtype="float32")
    ref = SimpleNamespace(keras_model=model, inputs=[spec], outputs=[SimpleNamespace(name="dense_1", key="output_0")])
    x = np.random.default_rng(0).normal(size=(24, 3)).astype("float32")
    noise = measure(ref, {"features": x}, {"output_0": model.predict(x, verbose=0)})
    assert noise.note == ""
    assert 0 < noise.values["output_0"] < 1e-6
    broken = SimpleNamespace(keras_model=SimpleNamespace(get_config=lambda: (_ for _ in ()).throw(TypeError("no float64"))),
                             inputs=[spec], outputs=ref.outputs)
    assert measure(broken, {"features": x}, {}).note == (
        "reference noise not measured: the model does not run in float64 (TypeError: no float64); the plain float32 "
        "bound applies")
    far = measure(ref, {"features": x}, {"output_0": model.predict(x, verbose=0) * 1.01})
    assert far.values == {}
    assert far.note.startswith("reference noise not recorded: the float64 rebuild differs from the float32 reference by ")


@pytest.mark.slow
def test_the_boston_bundle_records_noise_and_a_float16_verdict(boston_mlp_bundle: Path) -> None:
    manifest = manifest_mod.load(boston_mlp_bundle)
    [output] = manifest["outputs"]
    assert 0 <= output["reference_noise"] < 1e-6
    fp16 = next(a for a in manifest["artifacts"] if a["variant"] == "float16")
    assert fp16["status"] == "accepted"
    assert fp16["precision"]["rows"] == 33
    assert 0 < fp16["precision"]["precision_loss"] < 1e-3
    assert fp16["precision"]["converter_error"] <= 1e-5
    assert not any("reference noise" in a["note"] for a in manifest["artifacts"])


@pytest.mark.slow
def test_float16_is_rejected_when_the_model_itself_loses_more_than_the_bound(boston_mlp_bundle: Path) -> None:
    """The same check on the bundle's own float16 artifact and twin, with a reference 0.5 % of the range away."""
    from convert.twin import precision_check

    manifest = manifest_mod.load(boston_mlp_bundle)
    golden = json.loads((boston_mlp_bundle / "golden.json").read_text())
    inputs = {k: np.asarray(v, dtype=np.float32) for k, v in golden["inputs"].items()}
    [out] = manifest["outputs"]
    twin = {out["key"]: np.asarray(golden["twins"]["float16"][out["key"]])}
    span = out["range"][1] - out["range"][0]
    reference = {out["key"]: twin[out["key"]] + 0.005 * span}
    fp16 = (boston_mlp_bundle / "edge" / "model.fp16.tflite").read_bytes()
    fields = precision_check(fp16, inputs, twin, reference, manifest)
    assert fields["status"] == "rejected"
    assert fields["precision"]["precision_loss"] == pytest.approx(0.005, rel=1e-6)
    assert fields["rejection"].startswith(
        "precision loss: the model itself loses 0.500% of the output range in float16 (its precision twin, the float32 "
        "graph with the stored constants rounded to float16, against the reference on 33 golden rows) > 0.1%; "
        "converter error (artifact vs twin) ")
    assert fields["rejection"].endswith(" of the scale, within 1e-05: the converter is faithful")
    honest = precision_check(fp16, inputs, twin, {out["key"]: np.asarray(golden["outputs"][out["key"]])}, manifest)
    assert honest["status"] == "accepted" and "rejection" not in honest


@pytest.mark.slow
def test_a_saved_model_source_records_no_noise_and_says_why(tmp_path: Path) -> None:
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(4, activation="relu"),
                              keras.layers.Dense(1)])
    model.export(str(tmp_path / "sm"), format="tf_saved_model", verbose=False)
    result = run_cli("convert", tmp_path / "sm", "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    manifest = manifest_mod.load(tmp_path / "b")
    assert "reference_noise" not in manifest["outputs"][0]
    float32 = [a for a in manifest["artifacts"] if a["tolerance"]["kind"] == "scaled"]
    assert float32 and all(a["note"].endswith(SAVED_MODEL_NOTE) for a in float32)
    assert "reference noise not measured" in result.stdout  # the table's row (its text wraps in the cell)


def test_verify_says_the_bound_and_the_noise() -> None:
    from convert.parity.engine import Result
    from convert.parity.html import render
    from convert.show import why
    from edge.tolerance import FLOAT32

    result = Result("edge/model.fp32.tflite", "tflite", "float32", "litert", 100, dict(FLOAT32), passed=True,
                    status="passed", golden={"y": {"max_scaled": 3e-5, "reference_noise": 1.82e-5,
                                                   "max_scaled_allowed": 4.64e-5}})
    assert why(result) == "of-scale bound 4.64e-05 (reference noise 1.82e-05)"
    page = render({"passed": True, "results": [{**result.__dict__, "task_metric": None}], "bundle": "b", "name": "b",
                   "runtimes": ["litert"], "reference": "keras", "at": "now", "seconds": 1.0, "sample_rows": 0,
                   "environment": {}})
    assert "error ≤ 1e-05 of the output&#x27;s scale + 2 × the reference&#x27;s own float32 noise (1.82e-05)" in page \
        or "error ≤ 1e-05 of the output's scale + 2 × the reference's own float32 noise (1.82e-05)" in page
