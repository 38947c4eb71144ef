"""TFLite artifacts: fp32, fp16, dynamic range, full-integer int8 and int16x8, from a SavedModel.

Callers pass and receive real values: quantized variants keep float32 inputs and outputs (the
interpreter quantizes at the edges). Quantized variants of tabular models are converted from the
folded model (``convert.fold``) and carry the runner's input transform.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from convert.errors import DeployKitError

MIN_CALIBRATION_ROWS = 10
CALIBRATION_ROWS = 300


class Variant(str, Enum):
    """TFLite variants; the value is the manifest's variant name."""

    FP32 = "float32"
    FP16 = "float16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @property
    def file_name(self) -> str:
        return {"float32": "model.fp32.tflite", "float16": "model.fp16.tflite"}.get(self.value, f"model.{self.value}.tflite")

    @property
    def quantized(self) -> bool:
        return self in (Variant.DYNAMIC, Variant.INT8, Variant.INT16X8)

    @property
    def calibrated(self) -> bool:
        return self in (Variant.INT8, Variant.INT16X8)


@dataclass
class TFLiteResult:
    variant: Variant
    path: Path
    ops: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def representative(
    inputs: dict[str, np.ndarray],
    dtypes: dict[str, str],
    rows: int = CALIBRATION_ROWS,
    always: dict[str, np.ndarray] | None = None,
) -> Callable[[], Iterator[dict[str, np.ndarray]]]:
    """A calibration generator, one row per step, keyed by input name.

    It yields up to ``rows`` rows of DATA spread over the file, the rows holding each column's min and max,
    and every row of ``always`` (the golden inputs, corners of the feature ranges included), so that no
    golden input drives an activation past its calibrated range.
    """
    total = next(iter(inputs.values())).shape[0]
    index = np.linspace(0, total - 1, num=min(rows, total)).round().astype(int)
    index = np.unique(np.concatenate([index, _extreme_rows(inputs)]))
    sources = [(inputs, index)]
    if always:
        sources.append((always, np.arange(next(iter(always.values())).shape[0])))

    def generate() -> Iterator[dict[str, np.ndarray]]:
        for arrays, picks in sources:
            for i in picks:
                yield {name: np.asarray(arrays[name][i : i + 1], dtype=dtypes[name]) for name in dtypes}

    return generate


def _extreme_rows(inputs: dict[str, np.ndarray]) -> np.ndarray:
    """Rows holding each column's min and max, so calibration covers the whole data range."""
    picks = []
    for values in inputs.values():
        flat = values.reshape(values.shape[0], -1)
        if np.issubdtype(flat.dtype, np.floating):
            picks.extend(np.argmin(flat, axis=0).tolist() + np.argmax(flat, axis=0).tolist())
    return np.asarray(sorted(set(picks))[:2000], dtype=int)


def convert_variant(
    saved_model_dir: Path,
    variant: Variant,
    out: Path,
    calibration: Callable[[], Iterator[dict[str, np.ndarray]]] | None,
) -> TFLiteResult:
    """Convert one variant and write it to ``out``.

    Returns a result with ``error`` set (and no file) when the converter cannot produce the variant.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    if variant is Variant.FP16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif variant is Variant.DYNAMIC:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif variant is Variant.INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    elif variant is Variant.INT16X8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    try:
        flatbuffer = converter.convert()
    except Exception as exc:  # the converter raises ConverterError / RuntimeError / ValueError
        return TFLiteResult(variant=variant, path=out,
                            error=f"the TFLite converter cannot make {variant.value}: {_first_error(str(exc))}")
    out.write_bytes(flatbuffer)
    return TFLiteResult(variant=variant, path=out, ops=operators(flatbuffer))


def _first_error(text: str) -> str:
    """The converter's first ``error:`` line (its messages are long MLIR dumps), cut to one short line."""
    for line in text.splitlines():
        if "error:" in line:
            return " ".join(line.split("error:", 1)[1].split())[:240]
    return " ".join(text.split())[:240]


def operators(flatbuffer: bytes) -> list[dict[str, Any]]:
    """The operators (builtin name, version) a TFLite model uses, sorted."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    ops = set()
    for code in model.operatorCodes:
        builtin = max(int(code.builtinCode), int(code.deprecatedBuiltinCode))
        name = names.get(builtin, f"BUILTIN_{builtin}")
        if builtin == schema.BuiltinOperator.CUSTOM and code.customCode:
            name = f"CUSTOM:{code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode}"
        ops.add((name, int(code.version)))
    return [{"name": n, "version": v} for n, v in sorted(ops)]


def check_calibration_rows(rows: int) -> None:
    """Raises DeployKitError when DATA is too small to calibrate int8."""
    if rows < MIN_CALIBRATION_ROWS:
        raise DeployKitError(
            f"DATA has {rows} rows; int8 calibration needs at least {MIN_CALIBRATION_ROWS}; pass more rows with --data"
        )
