"""``convert.tflite``: the converter's calls and what they say when they fail (TF-free)."""

from __future__ import annotations


def test_converter_errors_are_one_short_line_each_sentence_once():
    from convert.tflite import _first_error

    dump = ("loc(fused[...]): error: Quantization to 16x8-bit not yet supported for op: 'NEG'. "
            "Quantization to 16x8-bit not yet supported for op: 'NEG'.\nnote: see current operation ...")
    assert _first_error(dump) == "Quantization to 16x8-bit not yet supported for op: 'NEG'."
    assert _first_error("error: Empty min/max for tensor serving_default_tokens") == (
        "Empty min/max for tensor serving_default_tokens")
