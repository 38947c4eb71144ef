"""``convert.parity.engine``: a ``verify --model`` whose interface is not the bundle's is refused in one line,
before the model runs on anything and before anything is written into the bundle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.helpers import run_cli

pytestmark = pytest.mark.slow

FIX = "pass the model the bundle was converted from, or convert this one"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[Path, Path]:
    """A bundle (float32 TFLite and the graph model only) of a model taking rows of 3 features named ``x``,
    and the folder the other models go in."""
    import keras

    from convert.pipeline import ConvertOptions, convert
    from convert.tflite import Variant

    folder = tmp_path_factory.mktemp("interface")
    keras.utils.set_random_seed(0)
    x = keras.Input((3,), name="x")
    keras.Model(x, keras.layers.Dense(1)(keras.layers.Dense(4, activation="relu")(x))).save(folder / "model.keras")
    np.savez(folder / "data.npz", x=np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32))
    convert(ConvertOptions(model=folder / "model.keras", data=folder / "data.npz", out=folder / "bundle",
                           variants=(Variant.FP32,), layers_model=False))
    return folder / "bundle", folder


def _model(path: Path, inputs: dict, outputs: int | list[int] = 1) -> Path:
    import keras

    tensors = [keras.Input(shape, name=name, dtype=dtype) for name, (shape, dtype) in inputs.items()]
    joined = keras.layers.Concatenate()(tensors) if len(tensors) > 1 else tensors[0]
    hidden = keras.layers.Dense(4)(keras.ops.cast(joined, "float32"))
    widths = [outputs] if isinstance(outputs, int) else outputs
    heads = [keras.layers.Dense(w)(hidden) for w in widths]
    keras.Model(tensors, heads if len(heads) > 1 else heads[0]).save(path)
    return path


def test_a_model_whose_interface_is_not_the_bundles_is_refused_naming_the_mismatch(small):
    bundle, folder = small
    manifest_before = (bundle / "manifest.json").read_bytes()
    cases = [
        (_model(folder / "wide.keras", {"x": ((300,), "float32")}),
         "input 'x' takes rows of shape [300], the bundle's [3]"),
        (_model(folder / "image.keras", {"image": ((28, 28, 1), "float32")}),
         "its inputs are ['image'], the bundle's ['x']"),
        (_model(folder / "two.keras", {"x": ((3,), "float32"), "extra": ((2,), "float32")}),
         "its inputs are ['extra', 'x'], the bundle's ['x']"),
        (_model(folder / "ints.keras", {"x": ((3,), "int32")}), "input 'x' is int32, the bundle's float32"),
        (_model(folder / "rank.keras", {"x": ((3, 1), "float32")}),
         "input 'x' takes rows of shape [3, 1], the bundle's [3]"),
        (_model(folder / "heads.keras", {"x": ((3,), "float32")}, [1, 2]),
         "its outputs are ['output_0', 'output_1'], the bundle's ['output_0']"),
        (_model(folder / "wider_out.keras", {"x": ((3,), "float32")}, 5),
         "output '"),  # named by its layer, whatever Keras numbered it
    ]
    for model, mismatch in cases:
        result = run_cli("verify", bundle, "--model", model, "--runtimes", "litert")
        assert result.returncode == 1, (model.name, result.stdout, result.stderr)
        errors = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
        assert errors[0].startswith(f"Error: --model {model.name} does not match the bundle: {mismatch}"), errors[0]
        assert errors[0].endswith(f"; {FIX}"), errors[0]
        assert "unexpected" not in errors[0]
    assert "(output_0) gives rows of shape [5], the bundle's [1]" in errors[0]
    assert (bundle / "manifest.json").read_bytes() == manifest_before
    assert not (bundle / "parity.json").exists() and not (bundle / "report.html").exists()


def test_the_model_the_bundle_was_converted_from_still_verifies(small):
    bundle, folder = small
    result = run_cli("verify", bundle, "--model", folder / "model.keras", "--runtimes", "litert")
    assert result.returncode == 0, result.stdout + result.stderr
