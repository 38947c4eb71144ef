"""``convert.tflite``: the converter's calls and what they say when they fail (TF-free)."""

from __future__ import annotations


def test_converter_errors_are_one_short_line_each_sentence_once():
    from convert.tflite import _first_error

    dump = ("loc(fused[...]): error: Quantization to 16x8-bit not yet supported for op: 'NEG'. "
            "Quantization to 16x8-bit not yet supported for op: 'NEG'.\nnote: see current operation ...")
    assert _first_error(dump) == "Quantization to 16x8-bit not yet supported for op: 'NEG'."
    assert _first_error("error: Empty min/max for tensor serving_default_tokens") == (
        "Empty min/max for tensor serving_default_tokens")


# The first lines of the TFLite converter's own messages (TF 2.19), for a model trained under mixed_float16 and
# for a CategoryEncoding(multi_hot) model: the cause sits after a loc(...) prefix longer than any kept reason.
_LOC_MATMUL = ('loc(callsite(callsite(fused["MatMul:", "mixed_f16_1/dense_2_1/MatMul@__inference___call___114"] at '
               'fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_signature_wrapper___call___141"])'
               ' at fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))')
_LOC_BIAS = _LOC_MATMUL.replace("MatMul", "BiasAdd")
MIXED_FLOAT16_DUMP = "\n".join([
    f"Could not translate MLIR to FlatBuffer.<unknown>:0: error: {_LOC_MATMUL}: 'tf.MatMul' op is neither a custom "
    "op nor a flex op",
    '<unknown>:0: note: loc(fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]): called from',
    f'<unknown>:0: note: {_LOC_MATMUL}: see current operation: %5 = "tf.MatMul"(%4, %1) <{{grad_a = false, grad_b = '
    'false, transpose_a = false, transpose_b = true}> : (tensor<?x6xf16>, tensor<16x6xf16>) -> tensor<?x16xf16>',
    f"<unknown>:0: note: {_LOC_MATMUL}: Error code: ERROR_NEEDS_FLEX_OPS",
    f"<unknown>:0: error: {_LOC_BIAS}: 'tf.BiasAdd' op is neither a custom op nor a flex op",
    f'<unknown>:0: note: {_LOC_BIAS}: see current operation: %6 = "tf.BiasAdd"(%5, %2) <{{data_format = "NHWC"}}> '
    '{device = ""} : (tensor<?x16xf16>, tensor<16xf16>) -> tensor<?x16xf16>',
])
_LOC_BINCOUNT = ('loc(callsite(callsite(fused["DenseBincount:", "category_encoding_1/multihot_1/bincount/DenseBincount'
                 '@__inference___call___859"] at fused["StatefulPartitionedCall:", "StatefulPartitionedCall@__inference_'
                 'signature_wrapper___call___886"]) at fused["StatefulPartitionedCall:", "StatefulPartitionedCall_1"]))')
BINCOUNT_DUMP = "\n".join([
    f"Could not translate MLIR to FlatBuffer.<unknown>:0: error: {_LOC_BINCOUNT}: 'tf.DenseBincount' op is neither a "
    "custom op nor a flex op",
    f'<unknown>:0: note: {_LOC_BINCOUNT}: see current operation: %1 = "tf.DenseBincount"(%arg0, %arg1, %arg2) {{T = '
    'f32, Tidx = i32, binary_output = true, device = ""} : (tensor<?x3xi32>, tensor<i32>, tensor<0xf32>) -> '
    'tensor<?x?xf32>',
    f"<unknown>:0: note: {_LOC_BINCOUNT}: Error code: ERROR_NEEDS_FLEX_OPS",
    "<unknown>:0: error: failed while converting: 'main': ",
    "Some ops are not supported by the native TFLite runtime, you can enable TF kernels fallback using TF Select. See "
    "instructions: https://www.tensorflow.org/lite/guide/ops_select ",
    "TF Select ops: DenseBincount",
])
HASH_TABLE_DUMP = "\n".join([
    "Could not translate MLIR to FlatBuffer.<unknown>:0: error: loc(fused[\"HashTableV2:\", \"hash_table\"]): "
    "'tf.HashTableV2' op is neither a custom op nor a flex op",
    '<unknown>:0: note: loc(fused["HashTableV2:", "hash_table"]): see current operation: %10 = "tf.HashTableV2"() '
    '<{container = "", key_dtype = i64, shared_name = "1484", use_node_name_sharing = false, value_dtype = i64}> '
    '{device = ""} : () -> tensor<!tf_type.resource>',
])


def test_the_kept_reason_is_the_cause_after_the_mlir_location_not_the_location():
    from convert.tflite import REASON_LIMIT, _first_error

    assert _first_error(BINCOUNT_DUMP) == ("'tf.DenseBincount' op is neither a custom op nor a flex op "
                                           "(at category_encoding_1/multihot_1/bincount/DenseBincount)")
    assert _first_error(HASH_TABLE_DUMP) == "'tf.HashTableV2' op is neither a custom op nor a flex op (at hash_table)"
    mixed = _first_error(MIXED_FLOAT16_DUMP)
    assert mixed.startswith(
        "'tf.MatMul' op is neither a custom op nor a flex op (at mixed_f16_1/dense_2_1/MatMul, on float16 tensors). "
        "TFLite has no float16 kernel for it: re-save a mixed_float16 model under the float32 dtype policy. "
        "'tf.BiasAdd' op is"), mixed
    for reason in (mixed, _first_error(BINCOUNT_DUMP), _first_error(HASH_TABLE_DUMP)):
        assert "loc(" not in reason and "\n" not in reason and len(reason) <= REASON_LIMIT + 2
    long = _first_error("\n".join(f"<unknown>:0: error: loc(\"x{i}\"): op number {i} failed" for i in range(60)))
    assert long.endswith(" …") and len(long) <= REASON_LIMIT + 2 and long.startswith("op number 0 failed (at x0). ")


def test_a_message_without_error_lines_keeps_its_first_line_without_a_location():
    from convert.tflite import _first_error

    assert _first_error('loc(fused["Foo:", "model/foo"]): something broke\nnotes') == "something broke"
    assert _first_error("\n  plain failure\nmore") == "plain failure"
