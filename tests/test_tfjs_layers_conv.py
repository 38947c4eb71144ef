"""convert.tfjs_layers_conv: what the convolution writers rewrite (Keras only; that it loads and matches in TFJS
is in test_tfjs_layers.py)."""

from __future__ import annotations

import json
import pathlib

import pytest

from tests.helpers import LazyModule

keras = LazyModule("keras")  # imported by the first test that builds a model, not at collection

from convert.tfjs_layers import write_layers_model  # noqa: E402


def test_causal_conv1d_is_written_as_same_padding_with_zero_taps(tmp_path: pathlib.Path) -> None:
    inp = keras.Input((9, 2))
    model = keras.Model(inp, keras.layers.Conv1D(3, 3, padding="causal", dilation_rate=2, name="tcn")(inp))
    written = write_layers_model(model, tmp_path)
    layer = json.loads((tmp_path / "model.json").read_text())["modelTopology"]["model_config"]["config"]["layers"][1]
    assert (layer["config"]["padding"], layer["config"]["kernel_size"]) == ("same", [5])
    assert written["notes"] == ["Conv1D 'tcn' (padding 'causal') written as padding 'same' with kernel 5 whose "
                                "last 2 taps are zero (TFJS 4.22 cannot run causal padding; same function)"]
