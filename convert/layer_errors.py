"""TF's per-layer int8 check for the mixed-precision search (``convert.mixed_precision``): each quantized
operator's error against the same operator in float, and the operators of a calibrated model in graph order."""

from __future__ import annotations

from typing import Mapping

import numpy as np

DEBUG_ROWS = 200  # calibration rows the per-layer check runs on (one invoke each)
NUMERIC_VERIFY = "NumericVerify/"


def layer_errors(debug_model: bytes, inputs: Mapping[str, np.ndarray], dtypes: Mapping[str, str],
                 rows: int = DEBUG_ROWS) -> dict[str, float]:
    """``{node name: rmse / scale}`` of every operator a NumericVerify operator checks in ``debug_model``.

    ``inputs`` are fed as the model takes them (transformed), keyed by signature input name. The node name
    is the calibrated model's output tensor name of the operator, the name ``denylisted_nodes`` takes.

    Raises:
        ValueError: the model has no NumericVerify operator (the debugger's own error).
    """
    import tensorflow as tf

    probe = tf.lite.Interpreter(model_content=bytes(debug_model))
    signature = probe.get_signature_runner("serving_default").get_input_details()
    by_index = {int(d["index"]): name for name, d in signature.items()}
    order = [by_index[int(d["index"])] for d in probe.get_input_details()]
    total = int(next(iter(inputs.values())).shape[0])
    picks = np.unique(np.linspace(0, total - 1, num=min(rows, total)).round().astype(int))

    def dataset():
        for i in picks:
            yield [np.asarray(inputs[name][i:i + 1], dtype=dtypes[name]) for name in order]

    debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=bytes(debug_model),
                                                         debug_dataset=dataset)
    debugger.run()
    details = {d["name"]: d for d in probe.get_tensor_details()}
    scores = {}
    for name, stats in debugger.layer_statistics.items():
        quantized = name[len(NUMERIC_VERIFY):].rsplit(":", 1)[0]  # the checked (quantized) tensor
        node = quantized[:-1]  # the verifier names its copy after the float tensor plus one digit
        scale = (details.get(quantized, {}).get("quantization") or (0.0, 0))[0]
        rmse = float(np.sqrt(stats["mean_squared_error"]))
        scores[node] = rmse / scale if scale > 0 else rmse
    return scores


def operator_outputs(calibrated: bytes) -> list[str]:
    """Every operator's first output tensor name, in graph order (the ranking when the debugger fails)."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=bytes(calibrated))
    names = {int(d["index"]): d["name"] for d in interpreter.get_tensor_details()}
    return [names[int(op["outputs"][0])] for op in interpreter._get_ops_details()  # noqa: SLF001 - TF's own op table
            if len(op["outputs"]) and op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")]
