"""``convert.tflite_int8``: full-integer int8 with float32 heads, on weights the converter keeps."""

from __future__ import annotations

import numpy as np

from tests.helpers import litert_predict, small_classifier, tflite_op_types


def _int8_weights(flatbuffer: bytes) -> list[np.ndarray]:
    """The int8 weights of every FULLY_CONNECTED operator, dequantized, as (in, out) matrices."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    out = []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(int(code.builtinCode), int(code.deprecatedBuiltinCode)) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        tensor = graph.tensors[op.inputs[1]]
        q = np.frombuffer(np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes(), dtype=np.int8)
        q = q.reshape(tensor.shape).astype(np.float64)
        scale = np.asarray(tensor.quantization.scale, dtype=np.float64)
        out.append((q * scale[:, None]).T)
    return out


def test_int8_softmax_runs_in_float_on_weights_the_converter_kept(tmp_path):
    """int8: the output softmax runs in float32 (an int8 softmax only outputs multiples of 1/256), and
    the converter keeps the GPTQ-rounded weights exactly (BatchNormalization folded in scales whole rows)."""
    from convert.fold import fold_inputs
    from convert.reference import export
    from convert.rounding import round_keras
    from convert.tflite import Variant, convert_variant, representative
    from edge.transform import apply

    model, x = small_classifier(tmp_path)
    fold = fold_inputs(model, {"features": x})
    rounded = round_keras(fold, {"features": x})
    assert rounded.note.startswith("int8 weights GPTQ-rounded on DATA (") and rounded.model is not fold.model
    z = apply(fold.transforms, {"features": x})
    result = convert_variant(export(rounded.model, tmp_path / "sm"), Variant.INT8, tmp_path / "m.tflite",
                             representative(z, {"features": "float32"}))
    assert result.error is None
    flatbuffer = result.path.read_bytes()
    ops = tflite_op_types(flatbuffer)
    assert ("SOFTMAX", ["FLOAT32"]) in ops
    assert [types for name, types in ops if name == "FULLY_CONNECTED"] == [["INT8", "INT8", "INT32"]] * 2
    bn = rounded.model.layers[1]
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64) for v in bn.get_weights())
    fused = np.asarray(rounded.model.layers[0].kernel, dtype=np.float64) * (gamma / np.sqrt(var + bn.epsilon))
    first, last = _int8_weights(flatbuffer)
    np.testing.assert_allclose(first, fused, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(last, np.asarray(rounded.model.layers[3].kernel), rtol=1e-5, atol=1e-7)
    reference = model.predict(x, verbose=0)
    actual = litert_predict(result.path, x, fold.transforms)
    assert np.abs(actual - reference).max() <= 0.02
