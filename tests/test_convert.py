"""deploykit train + convert on the Boston models: the bundle, the manifest, and quantization that holds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge import manifest as manifest_mod
from edge.tolerance import judge_outputs
from tests.helpers import BOSTON_CSV, boston_features, litert_predict, run_cli, run_entry_point, small_classifier

VARIANTS = ("float32", "float16", "dynamic", "int8", "int16x8")
QUANTIZED = ("dynamic", "int8", "int16x8")


def test_bundle_has_every_artifact_and_a_valid_manifest(boston_mlp_bundle):
    manifest = manifest_mod.load(boston_mlp_bundle)  # validates against the shipped schema
    manifest_mod.check_all_files(boston_mlp_bundle, manifest)
    tflite = {a["variant"]: a for a in manifest["artifacts"] if a["format"] == "tflite"}
    assert sorted(tflite) == sorted(VARIANTS)
    for variant, artifact in tflite.items():
        name = {"float32": "fp32", "float16": "fp16"}.get(variant, variant)
        assert artifact["path"] == f"edge/model.{name}.tflite"
        assert artifact["runtime"]["ops"], "the manifest records the operators each artifact needs"
    formats = {a["format"] for a in manifest["artifacts"]}
    assert "tfjs_graph" in formats
    assert [f["name"] for f in manifest["features"]] == ["rm", "tax", "age"]
    assert [f["label"] for f in manifest["features"]] == [
        "Number of rooms", "Property tax rate per $10,000", "Proportion of buildings built before 1940"]
    rm = manifest["features"][0]
    assert rm["min"] == pytest.approx(3.561) and rm["max"] == pytest.approx(8.78)
    assert manifest["provenance"]["data_sha256"] == manifest_mod.sha256_file(BOSTON_CSV)
    assert set(manifest["versions"]) >= {"python", "tensorflow", "keras", "tensorflowjs", "deploykit"}
    assert manifest["preprocessing"]["in_graph"][0]["kind"] == "normalization"


def test_golden_starts_with_the_course_row_and_holds_corners(boston_mlp_bundle, boston_mlp):
    import keras

    golden = json.loads((boston_mlp_bundle / "golden.json").read_text())
    rows = np.asarray(golden["inputs"]["features"], dtype=np.float32)
    assert rows[0].tolist() == [6.0, 250.0, 66.5]
    assert golden["kinds"][0] == "course"
    assert golden["kinds"].count("corner") == 8
    assert golden["kinds"].count("data") >= 20
    expected = keras.models.load_model(boston_mlp).predict(rows, verbose=0)
    # the same float32 values up to the last bit or two (Keras' batched kernels round differently)
    np.testing.assert_allclose(np.asarray(golden["outputs"]["output_0"]), expected, rtol=1e-6)


@pytest.mark.parametrize("which", ["mlp", "linear"])
def test_every_tflite_variant_stays_within_its_tolerance_on_every_row(which, request):
    """The int8 promise: quantized variants within 1% of the reference output range over all of DATA
    and every golden row (the corners of the feature ranges included)."""
    import keras

    bundle = request.getfixturevalue(f"boston_{which}_bundle")
    model = keras.models.load_model(request.getfixturevalue(f"boston_{which}"))
    manifest = manifest_mod.load(bundle)
    golden = json.loads((bundle / "golden.json").read_text())
    rows = np.concatenate([boston_features(), np.asarray(golden["inputs"]["features"], dtype=np.float32)])
    reference = model.predict(rows, verbose=0)
    by_variant = {a["variant"]: a for a in manifest["artifacts"] if a["format"] == "tflite"}
    for artifact in by_variant.values():
        actual = litert_predict(bundle / artifact["path"], rows, artifact["input_transform"])
        if artifact["variant"] in QUANTIZED:
            assert artifact["input_transform"], "quantized Boston artifacts carry the per-feature scaling"
        twin = None
        if artifact["variant"] == "float16":
            from convert.twin import twin_outputs

            twin = twin_outputs((bundle / by_variant["float32"]["path"]).read_bytes(),
                                (bundle / artifact["path"]).read_bytes(), manifest, {"features": rows})
        verdict = judge_outputs(manifest, artifact["tolerance"], {"output_0": reference}, {"output_0": actual}, twin)
        assert verdict["passed"], f"{artifact['variant']}: {verdict['failures']}"


def test_naive_int8_is_what_the_fold_fixes(boston_mlp, tmp_path):
    """Without the kit's per-feature scaling, full-integer int8 of the MLP misses the 1% bound."""
    import keras

    from convert.reference import export
    from convert.tflite import Variant, convert_variant, representative

    model = keras.models.load_model(boston_mlp)
    rows = boston_features()
    saved = export(model, tmp_path / "sm")
    result = convert_variant(saved, Variant.INT8, tmp_path / "naive.tflite", representative({"features": rows}, {"features": "float32"}))
    assert result.error is None
    reference = model.predict(rows, verbose=0)
    naive = litert_predict(result.path, rows, [])
    span = float(reference.max() - reference.min())
    assert np.abs(naive - reference).max() > 0.01 * span


def test_tiny_models_say_quantizing_did_not_shrink_them(boston_linear_bundle):
    manifest = manifest_mod.load(boston_linear_bundle)
    quantized = [a for a in manifest["artifacts"] if a["variant"] in QUANTIZED]
    assert any(a["shrinks"] is False for a in quantized)
    for artifact in quantized:
        if artifact["shrinks"] is False:
            assert "did not shrink" in artifact["note"]


def test_convert_prints_a_table_of_artifacts(boston_mlp, tmp_path):
    """The installed program (a fresh process: TensorFlow's import-time noise is printed there) shows the table
    and nothing of TensorFlow's logs."""
    result = run_entry_point("convert", boston_mlp, "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    assert "model.int8.tflite" in result.stdout and "tfjs_graph" in result.stdout
    noise = [line for line in (result.stdout + result.stderr).splitlines()
             if line.startswith(("W0000", "E0000", "I0000", "WARNING:", "INFO:")) or "tensorflow/" in line]
    assert noise == [], "TensorFlow's log noise reached the terminal"


def test_convert_replaces_only_with_force_and_atomically(boston_linear, boston_linear_bundle, tmp_path):
    out = tmp_path / "b"
    shutil.copytree(boston_linear_bundle, out)  # what `deploykit convert` wrote for this model, with this command
    before = (out / "manifest.json").read_text()
    again = run_cli("convert", boston_linear, "--data", BOSTON_CSV, "--target", "medv", "--out", out)
    assert again.returncode == 1
    assert (out / "manifest.json").read_text() == before
    forced = run_cli("convert", boston_linear, "--data", BOSTON_CSV, "--target", "medv", "--out", out, "--force")
    assert forced.returncode == 0, forced.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["b"], "no staging or old folder is left behind"


def test_saved_models_convert_including_keras2_exports(tmp_path):
    """SavedModels from Keras 3 ``model.export`` and from Keras 2 (tf_keras) ``model.export`` both convert."""
    import tf_keras

    rows = boston_features()
    k2 = tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(3,))])
    k2.compile(optimizer="adam", loss="mse")
    k2.fit(rows, rows[:, :1] * 0.1, epochs=1, verbose=0)
    k2.export(str(tmp_path / "k2"))
    result = run_cli("convert", tmp_path / "k2", "--data", BOSTON_CSV, "--target", "medv", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    manifest = manifest_mod.load(tmp_path / "b")
    assert {a["variant"] for a in manifest["artifacts"] if a["format"] == "tflite"} == set(VARIANTS)
    assert any(s["format"] == "tfjs_layers" and "SavedModel" in s["reason"] for s in manifest["skipped"])
    golden = json.loads((tmp_path / "b" / "golden.json").read_text())
    (name,) = golden["inputs"]
    expected = k2.predict(np.asarray(golden["inputs"][name], dtype=np.float32), verbose=0)
    key = manifest["outputs"][0]["key"]
    np.testing.assert_allclose(np.asarray(golden["outputs"][key]), expected, rtol=1e-6)


def test_large_models_shrink_as_promised(tmp_path):
    """On a digits CNN of 56k parameters: fp32/int8 >= 3.5x and fp32/fp16 >= 1.9x.

    Measured, not promised for every model of >= 10k parameters: TFLite stores a float scale and an
    int64 zero point per output channel plus int32 biases, about 5 KB here, so a 19.5k-parameter CNN
    reaches 3.18x and a 12.5k-parameter MLP 3.0x (see the README).
    """
    import keras

    from sklearn.datasets import load_digits

    keras.utils.set_random_seed(0)
    x = (load_digits().images[:300, :, :, None] / 16.0).astype(np.float32)
    inputs = keras.Input(shape=(8, 8, 1), name="image")
    h = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.Conv2D(64, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(h))
    assert model.count_params() >= 10_000
    model.save(tmp_path / "wide.keras")
    np.savez(tmp_path / "data.npz", image=x)
    result = run_cli("convert", tmp_path / "wide.keras", "--data", tmp_path / "data.npz", "--out", tmp_path / "b")
    assert result.returncode == 0, result.stderr
    sizes = {a["variant"]: a["bytes"] for a in manifest_mod.load(tmp_path / "b")["artifacts"] if a["format"] == "tflite"}
    assert sizes["float32"] / sizes["int8"] >= 3.5
    assert sizes["float32"] / sizes["float16"] >= 1.9


def test_training_is_deterministic(boston_build):
    """``train(kind, seed)`` gives the same weights and hold-out error as ``deploykit train --seed`` did for the
    same seed (the session's, or a cached earlier run's, seed-7 MLP): one training here, not two."""
    import keras

    from convert.train import boston_split, train

    saved = keras.models.load_model(boston_build("mlp", seed=7)[0])
    again = train("mlp", seed=7)
    for a, b in zip(saved.get_weights(), again.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    _, _, x_hold, y_hold = boston_split(7)
    assert float(np.mean(np.abs(saved.predict(x_hold, verbose=0) - y_hold))) == again.holdout_mae


def test_sequential_output_is_named_after_its_layer(tmp_path: Path) -> None:
    """Sequential models have no output_names; the manifest names the output after the last layer."""
    import keras

    from convert import reference

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax", name="species")])
    model.save(tmp_path / "clf.keras")
    ref = reference.load(tmp_path / "clf.keras")
    assert [o.name for o in ref.outputs] == ["species"]
    assert [o.key for o in ref.outputs] == ["output_0"]


# --- the quantized converter: fold, GPTQ rounding, unrolled RNNs (int8 heads: test_tflite_int8.py, fp16 biases:
# test_tflite_fp16.py) ---

def test_fold_reads_loaded_sequential_models(tmp_path):
    """A loaded Sequential model's first layer holds one node per build; it is still folded."""
    from convert.fold import fold_inputs
    from edge.transform import apply

    model, x = small_classifier(tmp_path)
    fold = fold_inputs(model, {"features": x})
    assert fold is not None and fold.note.startswith("per-feature input scaling (folded into dense")
    z = apply(fold.transforms, {"features": x})["features"]
    assert z.min(axis=0) == pytest.approx(-1.0) and z.max(axis=0) == pytest.approx(1.0)  # every feature spans [-1, 1]
    np.testing.assert_allclose(fold.model.predict(z, verbose=0), model.predict(x, verbose=0), atol=2e-6)


def test_fold_drops_a_normalization_into_the_next_dense(tmp_path):
    import keras

    from convert.fold import fold_inputs
    from edge.transform import apply

    keras.utils.set_random_seed(0)
    a = keras.Input((3,), name="b")
    normalized = keras.layers.Normalization(mean=5.0, variance=4.0, name="normalization")(a)
    out = keras.layers.Dense(2, name="head")(keras.layers.Dense(4, activation="relu", name="dense")(normalized))
    model = keras.Model(a, out)
    x = np.random.default_rng(1).normal(5, 2, (200, 3)).astype(np.float32)
    fold = fold_inputs(model, {"b": x})
    assert "folded into normalization + dense" in fold.note
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in fold.model.layers)
    z = apply(fold.transforms, {"b": x})["b"]
    np.testing.assert_allclose(fold.model.predict(z, verbose=0), model.predict(x, verbose=0), atol=2e-6)


def test_gptq_rounding_is_on_the_int8_grid_and_beats_rounding_to_nearest():
    from convert.calibration import gptq_round

    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12))
    x = rng.normal(size=(2000, 12)) @ mixing  # correlated inputs, as a layer's are
    w = rng.normal(size=(12, 5))
    scale = np.abs(w).max(axis=0) / 127
    q = gptq_round(w, x)
    steps = q / scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert np.abs(np.round(steps)).max(axis=0).tolist() == [127] * 5  # the converter derives the same scales
    nearest = np.round(w / scale) * scale
    assert np.linalg.norm(x @ (q - w)) < 0.8 * np.linalg.norm(x @ (nearest - w))  # 0.70 measured


def test_recurrent_layers_unroll_to_tflite_builtins(tmp_path):
    """A Keras 3 LSTM converts to builtins (no WHILE, no Flex) for any batch size once unrolled."""
    import keras
    from ai_edge_litert.interpreter import Interpreter

    from convert.reference import export
    from convert.keras_graph import unrolled
    from convert.tflite import Variant, convert_variant

    keras.utils.set_random_seed(0)
    tokens = keras.Input((12,), dtype="int32", name="tokens")
    h = keras.layers.LSTM(8)(keras.layers.Embedding(30, 8)(tokens))
    model = keras.Model(tokens, keras.layers.Dense(1, activation="sigmoid")(h))
    assert convert_variant(export(model, tmp_path / "loop"), Variant.FP32, tmp_path / "loop.tflite", None).error
    copy = unrolled(model)
    result = convert_variant(export(copy, tmp_path / "flat"), Variant.FP32, tmp_path / "flat.tflite", None)
    assert result.error is None
    assert not {o["name"] for o in result.ops} & {"WHILE", "FLEX", "CUSTOM"}
    x = np.random.default_rng(0).integers(1, 30, (5, 12)).astype(np.int32)
    interpreter = Interpreter(model_path=str(result.path))
    index = interpreter.get_input_details()[0]["index"]
    interpreter.resize_tensor_input(index, x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(index, x)
    interpreter.invoke()
    actual = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(actual, model.predict(x, verbose=0), atol=1e-6)
    variable = keras.Sequential([keras.Input((None, 3)), keras.layers.GRU(4)])
    assert unrolled(variable) is None  # no fixed number of steps to unroll
