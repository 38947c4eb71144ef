"""``convert.reference``: a model's outputs as the manifest names and keys them, whatever structure Keras gives
them (one tensor, a list, a dict), and ``predict`` keyed the same way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convert.errors import DeployKitError
from tests.helpers import run_cli


@pytest.fixture(scope="module")
def dict_model(tmp_path_factory) -> tuple[Path, Path]:
    """A functional model whose outputs are a dict, inserted out of key order and keyed unlike their layers,
    one of them of shape (None,), with its DATA."""
    import keras

    folder = tmp_path_factory.mktemp("dict_outputs")
    keras.utils.set_random_seed(0)
    x = keras.Input((4,), name="x")
    h = keras.layers.Dense(8, activation="relu", name="hidden")(x)
    score = keras.layers.Reshape((), name="score_layer")(keras.layers.Dense(1, name="to_score")(h))
    model = keras.Model(x, {"zeta": keras.layers.Dense(3, name="to_zeta")(h), "alpha": score}, name="dict_out")
    model.save(folder / "dict_out.keras")
    np.savez(folder / "dict_out.npz", x=np.random.default_rng(0).normal(size=(120, 4)).astype(np.float32))
    return folder / "dict_out.keras", folder / "dict_out.npz"


def test_dict_outputs_are_named_and_keyed_by_their_dict_keys_in_sorted_order(dict_model):
    from convert.reference import load

    model, data = dict_model
    ref = load(model)
    assert [(o.name, o.key, o.shape) for o in ref.outputs] == [("alpha", "alpha", [None]), ("zeta", "zeta", [None, 3])]
    x = np.load(data)["x"][:5]
    got = ref.predict({"x": x})
    want = ref.keras_model.predict(x, verbose=0)
    assert sorted(got) == ["alpha", "zeta"]
    for key in got:
        np.testing.assert_array_equal(got[key], want[key])


def test_a_dict_output_model_converts_and_every_runtime_finds_its_outputs(dict_model, tmp_path):
    model, data = dict_model
    result = run_cli("convert", model, "--data", data, "--out", tmp_path / "bundle")
    assert result.returncode == 0, result.stderr
    assert "Warning" not in result.stderr
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [(o["name"], o["key"]) for o in manifest["outputs"]] == [("alpha", "alpha"), ("zeta", "zeta")]
    formats = {(a["format"], a["variant"]) for a in manifest["artifacts"]}
    assert {("tflite", v) for v in ("float32", "float16", "dynamic", "int8", "int16x8")} <= formats
    assert ("tfjs_graph", "float32") in formats and ("tfjs_layers", "float32") in formats
    for artifact in manifest["artifacts"]:
        assert sorted(artifact["io"]["outputs"]) == ["alpha", "zeta"], artifact
    golden = json.loads((tmp_path / "bundle" / "golden.json").read_text())
    assert sorted(golden["outputs"]) == ["alpha", "zeta"]
    for variant in ("float32", "int8"):  # the runner checks the .tflite signature's outputs against the manifest
        selftest = run_cli("selftest", tmp_path / "bundle", "--variant", variant, module="edge")
        assert selftest.returncode == 0, selftest.stdout + selftest.stderr


def test_nested_outputs_are_refused_in_one_line(tmp_path):
    import keras

    from convert.reference import load

    x = keras.Input((2,), name="x")
    keras.Model(x, {"a": [keras.layers.Dense(1)(x), keras.layers.Dense(2)(x)]}).save(tmp_path / "nested.keras")
    with pytest.raises(DeployKitError) as error:
        load(tmp_path / "nested.keras")
    assert str(error.value) == ("model nested.keras: its outputs are nested (output 'a' is a list), which a SavedModel "
                                "signature cannot hold; return a flat dict or list of tensors and re-save")
