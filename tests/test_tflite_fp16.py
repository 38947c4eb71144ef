"""``convert.tflite_fp16``: the float16 variant keeps its biases in float32."""

from __future__ import annotations

import numpy as np

from tests.helpers import boston_features, litert_predict, tflite_op_types


def test_fp16_keeps_biases_in_float32(tmp_path):
    import keras

    from convert.reference import export
    from convert.tflite import Variant, convert_variant

    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(64, activation="relu")(inputs)))
    rng = np.random.default_rng(0)
    model.set_weights([w + rng.normal(0, 0.1, w.shape).astype(np.float32) for w in model.get_weights()])  # biases not 0
    result = convert_variant(export(model, tmp_path / "sm"), Variant.FP16, tmp_path / "m.tflite", None)
    assert result.error is None
    ops = tflite_op_types(result.path.read_bytes())
    assert [types for name, types in ops if name == "FULLY_CONNECTED"] == [["FLOAT32", "FLOAT32", "FLOAT32"]] * 2
    assert [types for name, types in ops if name == "DEQUANTIZE"] == [["FLOAT16"]] * 2  # the two kernels
    rows = boston_features()[:50]
    reference = model.predict(rows, verbose=0)
    actual = litert_predict(result.path, rows, [])
    assert np.abs(actual - reference).max() <= 1e-3 * np.abs(reference).max()


def test_constants_beyond_float16_s_range_saturate_as_the_converter_stores_them(tmp_path):
    """numpy makes 2e5 inf in float16, the converter stores 65504: the two graphs "did not match", so the bias
    stayed float16 (65504 for 2e5: 5 % of the output range off, and convert accepted it) and no precision twin
    was made (a faithful UnitNormalization model, with its 1e12 constant, then failed verify)."""
    import keras

    from convert.reference import export
    from convert.tflite import Variant, convert_variant
    from convert.tflite_fp16 import as_float16

    assert as_float16(np.array([2e5, -1e12, 1.0, np.inf], dtype=np.float32)).tolist() == [65504.0, -65504.0, 1.0, np.inf]
    keras.utils.set_random_seed(0)
    inputs = keras.Input((3,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(1)(keras.layers.Dense(8, activation="relu")(inputs)))
    weights = model.get_weights()
    weights[3] = np.array([2e5], dtype=np.float32)  # the output bias: outputs near 2e5
    model.set_weights(weights)
    result = convert_variant(export(model, tmp_path / "sm"), Variant.FP16, tmp_path / "m.tflite", None)
    assert result.error is None
    rows = boston_features()[:50]
    reference = model.predict(rows, verbose=0)
    actual = litert_predict(result.path, rows, [])
    assert np.abs(actual - reference).max() <= 1e-3 * np.abs(reference).max()  # the bias kept in float32
