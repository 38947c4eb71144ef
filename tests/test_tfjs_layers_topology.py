"""convert.tfjs_layers_topology (through ``write_layers_model``): what the layers writer refuses, each refusal one
clause naming the layer and whose limit it is, and nothing written (Keras only; no browser)."""

from __future__ import annotations

import pathlib

import pytest

from tests.helpers import LazyModule

keras = LazyModule("keras")  # imported by the first test that builds a model, not at collection

from convert.tfjs_layers import UnsupportedLayers, write_layers_model  # noqa: E402


def test_unsupported_layer_raises_and_writes_nothing(tmp_path: pathlib.Path) -> None:
    inp = keras.Input((3,))
    x = keras.layers.UnitNormalization(name="unit")(inp)
    model = keras.Model(inp, keras.layers.Dense(1, name="out")(x))
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path / "m")
    assert str(err.value) == ("TFJS layers model not written: UnitNormalization ('unit'): TFJS 4.22 has no "
                              "such layer; the graph model is still written")
    assert not (tmp_path / "m").exists()


def test_unsupported_options_are_named(tmp_path: pathlib.Path) -> None:
    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4)(tokens)
    x = keras.layers.GRU(3, name="gru")(x)
    model = keras.Model(tokens, keras.layers.Dense(1, activation="hard_sigmoid", name="head")(x))
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path)
    assert str(err.value) == (
        "TFJS layers model not written: GRU 'gru' uses reset_after=True (the Keras 3 default): TFJS 4.22's "
        "GRUCell refuses it, and its reset_after=False form computes the candidate from U·(r∘h) where Keras "
        "computes r∘(U·h + b), which no choice of weights makes equal; build the GRU with reset_after=False "
        "for a layers model; Dense 'head' uses activation 'hard_sigmoid': TFJS 4.22 computes hardSigmoid as "
        "0.2x + 0.5, Keras 3 as relu6(x + 3) / 6; the graph model is still written")


def test_nested_model_is_named(tmp_path: pathlib.Path) -> None:
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)], name="inner")
    inp = keras.Input((3,))
    model = keras.Model(inp, inner(inp))
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path)
    assert str(err.value) == ("TFJS layers model not written: nested model 'inner' (Sequential): the kit's "
                              "writer does not flatten nested models yet; the graph model is still written")


def test_mask_into_a_layer_without_masking_is_refused(tmp_path: pathlib.Path) -> None:
    tokens = keras.Input((5,), dtype="int32")
    x = keras.layers.Embedding(10, 4, mask_zero=True)(tokens)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    model = keras.Model(tokens, keras.layers.Dense(1)(x))
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path)
    assert str(err.value) == (
        "TFJS layers model not written: GlobalAveragePooling1D 'gap' receives a "
        "mask (Embedding mask_zero=True), which TFJS GlobalAveragePooling1D does not support; "
        "the graph model is still written")


def test_keras_ops_in_the_graph_are_refused(tmp_path: pathlib.Path) -> None:
    inp = keras.Input((3,))
    x = keras.layers.Dense(2, name="d")(inp)
    model = keras.Model(inp, x * 2.0)
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path)
    op_name = model.get_config()["layers"][-1]["name"]
    assert str(err.value) == (f"TFJS layers model not written: Keras op {op_name!r} "
                              "(Multiply); TFJS layers models hold layers only; the graph model is still written")


def test_what_tfjs_cannot_express_is_named_with_its_reason(tmp_path: pathlib.Path) -> None:
    """Each refusal says whose limit it is: TFJS 4.22's (with what it does instead) or the kit's writer's."""
    seq = keras.Input((6, 4))
    img = keras.Input((8, 8, 2))
    a = keras.layers.MultiHeadAttention(2, 4, name="mha")(seq, seq)
    b = keras.layers.Conv1D(3, 2, strides=2, padding="causal", name="causal")(seq)
    c = keras.layers.ELU(alpha=0.5, name="elu")(seq)
    d = keras.layers.DepthwiseConv2D(3, dilation_rate=2, name="dw")(img)
    e = keras.layers.UpSampling2D(interpolation="bilinear", name="up")(img)
    model = keras.Model([seq, img], [a, b, c, d, e])
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path / "m")
    assert str(err.value) == (
        "TFJS layers model not written: MultiHeadAttention ('mha'): TFJS 4.22's MultiHeadAttention takes its "
        "value tensor as a call keyword argument, and tf.loadLayersModel passes an inbound node's keyword "
        "arguments as plain JSON, never as tensors; "
        "Conv1D 'causal' uses padding 'causal' with strides [2]: TFJS 4.22 throws NotImplementedError on "
        "causal padding, and the kit's rewrite as 'same' padding is exact only for stride 1; "
        "ELU 'elu' uses alpha=0.5: TFJS 4.22's ELU layer throws NotImplementedError for any alpha but 1; "
        "DepthwiseConv2D 'dw' uses dilation_rate [2, 2], which TFJS 4.22's DepthwiseConv2D ignores (it runs "
        "undilated); "
        "UpSampling2D 'up' uses interpolation 'bilinear': TFJS 4.22's UpSampling2D resizes without half-pixel "
        "centers (output pixel i samples input i / s; Keras 3 samples (i + 0.5) / s - 0.5), a different function; "
        "the graph model is still written")
    assert not (tmp_path / "m").exists()


def test_softmax_over_a_non_last_axis_is_refused(tmp_path: pathlib.Path) -> None:
    """It was written as it was; TFJS 4.22 then refused it at run time ("Softmax along a non-last dimension is
    not yet supported") on every backend, and verify failed the layers model."""
    inp = keras.Input((4, 3))
    model = keras.Model(inp, keras.layers.Softmax(axis=1, name="sm")(inp))
    with pytest.raises(UnsupportedLayers) as err:
        write_layers_model(model, tmp_path / "m")
    assert str(err.value) == ("TFJS layers model not written: Softmax 'sm' over axis 1 of a rank-3 input (TFJS runs "
                              "softmax over the last axis only); the graph model is still written")
    last = keras.Model(inp, keras.layers.Softmax(axis=-1, name="sm")(inp))
    write_layers_model(last, tmp_path / "ok")  # the last axis, however it is spelt, is written
    write_layers_model(keras.Model(inp, keras.layers.Softmax(axis=2)(inp)), tmp_path / "ok2")
