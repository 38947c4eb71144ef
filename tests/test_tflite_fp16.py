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
