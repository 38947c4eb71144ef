"""convert.tfjs_rewrite: Erfc becomes 1 - Erf in a copy of the SavedModel, for tensorflowjs 4.22.

The browser half (the rewritten graph model within the float32 bound in Chromium on cpu, wasm and webgl) is
the zoo's ``gelu_exact_mlp`` case (tests/zoo); here: the rewrite, the copy, and its float32 error.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def _digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(path.relative_to(folder).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def gelu_saved_model(tmp_path_factory) -> Path:
    import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,), name="x")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="gelu")(inputs)))
    folder = tmp_path_factory.mktemp("gelu") / "saved_model"
    model.export(str(folder), format="tf_saved_model", verbose=False)
    return folder


def test_erfc_is_rewritten_in_a_copy_and_the_source_is_untouched(gelu_saved_model):
    import tensorflow as tf

    from convert.model_safety import parse_saved_model
    from convert.tfjs_rewrite import NOTE, erfc_nodes, for_tfjs

    assert erfc_nodes(parse_saved_model(gelu_saved_model)) == 1
    before = _digest(gelu_saved_model)
    x = tf.constant(np.random.default_rng(0).normal(0, 3, (2000, 4)), tf.float32)
    with for_tfjs(gelu_saved_model) as (copy, notes):
        assert notes == [NOTE] and copy != gelu_saved_model
        assert erfc_nodes(parse_saved_model(copy)) == 0
        ops = {n.op for f in parse_saved_model(copy).meta_graphs[0].graph_def.library.function for n in f.node_def}
        assert "Erf" in ops
        original = tf.saved_model.load(str(gelu_saved_model)).signatures["serving_default"](x=x)["output_0"].numpy()
        rewritten = tf.saved_model.load(str(copy)).signatures["serving_default"](x=x)["output_0"].numpy()
        scaled = float(np.abs(rewritten - original).max() / np.abs(original).max())
        assert 0 < scaled <= 1e-6, scaled  # not the same graph, and well inside the float32 bound (1e-5)
    assert not copy.exists(), "the copy is removed"
    assert _digest(gelu_saved_model) == before


def test_a_saved_model_without_erfc_is_converted_as_it_is(tmp_path):
    import keras

    from convert.tfjs_rewrite import for_tfjs

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="relu")])
    model.export(str(tmp_path / "plain"), format="tf_saved_model", verbose=False)
    with for_tfjs(tmp_path / "plain") as (source, notes):
        assert (source, notes) == (tmp_path / "plain", [])


def test_the_float32_error_the_rewrite_adds_is_what_the_module_states():
    """Over [-10, 10] (200,001 float32 points) against float64 math.erfc: 1 - Erf within 3.7e-7 (TF's Erfc:
    1.0e-7), and GELU through it within 1.7e-7 of its scale on [-3, 3] (the docstring's numbers)."""
    import tensorflow as tf

    x = np.linspace(-10, 10, 200_001).astype(np.float32)
    x64 = x.astype(np.float64)
    erfc = np.array([math.erfc(v) for v in x64])
    rewritten = (1.0 - tf.math.erf(x)).numpy().astype(np.float64)
    assert np.abs(rewritten - erfc).max() <= 3.7e-7
    assert np.abs(tf.math.erfc(x).numpy() - erfc).max() <= 1.1e-7
    small = np.abs(x64) <= 3
    gelu = 0.5 * x64 * np.array([math.erfc(-v / math.sqrt(2)) for v in x64])
    xt = tf.constant(x)
    rewritten_gelu = (0.5 * xt * (1.0 - tf.math.erf(-xt * 0.7071067811865476))).numpy().astype(np.float64)
    assert np.abs(rewritten_gelu - gelu)[small].max() / np.abs(gelu[small]).max() <= 1.7e-7
