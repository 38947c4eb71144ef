"""Full-integer int8 from a calibrated model, with the fixed-output-scale heads (and, for
``convert.mixed_precision``, chosen operators) kept in float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def configure(converter: Any, calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None) -> None:
    """Set ``converter`` (a ``tf.lite.TFLiteConverter``) to calibrate for int8 only: its ``convert()`` then
    gives the calibrated float model that :func:`quantize_calibrated` quantizes (float heads excepted)."""
    import tensorflow as tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = calibration
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True


def calibrate(saved_model_dir: Path, calibration: Callable[[], Iterator[dict[str, np.ndarray]]]) -> bytes:
    """The calibrated float model of a SavedModel (as ``convert.tflite.convert_variant`` makes it for int8).

    Raises:
        Exception: whatever the TFLite converter raises (ConverterError, RuntimeError, ValueError).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    configure(converter, calibration)
    return converter.convert()


def quantize_calibrated(calibrated: bytes, float_nodes: list[str] | None = None, numeric_verify: bool = False) -> bytes:
    """Full-integer int8 from a calibrated model (int8 weights and activations, float32 edges), as
    ``TFLiteConverter`` makes it, with the :func:`float_heads` and ``float_nodes`` (output tensor names)
    left in float32.

    ``numeric_verify`` adds TF's NumericVerify operators (the per-layer check of
    ``convert.layer_errors.layer_errors``). int16x8 has no such entry: ``mlir_quantize``'s int16 path writes
    int16 tensors with non-zero zero points, which the TFLite kernels refuse.

    Raises:
        Exception: whatever ``mlir_quantize`` raises (RuntimeError, often with no text).
    """
    from tensorflow.lite.python import convert as tflite_convert

    denylist = float_heads(calibrated) + list(float_nodes or [])
    return tflite_convert.mlir_quantize(calibrated, denylisted_nodes=denylist or None,
                                        enable_numeric_verify=numeric_verify)


# int8 kernels of these activations have a fixed output scale: softmax and logistic 1/256, tanh 1/128
FIXED_SCALE_OPS = ("SOFTMAX", "LOGISTIC", "TANH")


def float_heads(flatbuffer: bytes) -> list[str]:
    """Output tensor names of the fixed-output-scale activations that produce a model output.

    An int8 softmax can only output multiples of 1/256: for a classifier whose probabilities move
    over a few percent, that grid alone is several percent of the output range. These ops run in
    float32 on dequantized int8 inputs instead; they are elementwise and cheap.
    """
    from edge.tflite_file import operators as read_operators

    return [name for op in read_operators(flatbuffer) if op.name in FIXED_SCALE_OPS and op.writes_output
            for name in op.output_names]


def quantize_int8(calibrated: bytes) -> bytes:
    """Full-integer int8 from a calibrated model, as ``TFLiteConverter`` does it (per-channel weights,
    float32 inputs and outputs), except the :func:`float_heads`, which stay float32."""
    return quantize_calibrated(calibrated)
