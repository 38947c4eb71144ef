"""TFLite artifacts: fp32, fp16, dynamic range, full-integer int8 and int16x8, from a SavedModel.

Callers pass and receive real values: quantized variants keep float32 inputs and outputs (the
interpreter quantizes at the edges). Quantized variants are converted from the folded, GPTQ-rounded
model (``convert.fold``, ``convert.rounding``) and carry the runner's input transform.

Beyond the converter's defaults, each in its own module: int8 runs a softmax / logistic / tanh that produces
a model output in float32 and can keep more operators in float (``convert.tflite_int8``, the hook of
``convert.mixed_precision``), fp16 keeps biases in float32 (``convert.tflite_fp16``), dynamic range picks
per-tensor or per-channel Dense weights by measurement (``convert.tflite_dynamic``), and calibration sees every
DATA row up to ``CALIBRATION_ROWS`` (a row outside the calibrated ranges clips). The copy with fixed-length RNNs
unrolled is ``convert.keras_graph.unrolled``.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from convert import interrupt
from convert.errors import DeployKitError
from convert.tflite_dynamic import dynamic_weights
from convert.tflite_fp16 import float32_biases
from convert.tflite_int8 import configure as configure_int8
from convert.tflite_int8 import quantize_int8

MIN_CALIBRATION_ROWS = 10
CALIBRATION_ROWS = 2000  # 300 missed rows of DATA whose hidden activations exceed the calibrated ranges


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
    note: str = ""  # what the conversion chose that the manifest's note should say
    # int8: the calibrated float model the artifact was quantized from (for the mixed-precision search)
    calibrated: bytes | None = None


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
        # One weight scale per Dense kernel: the per-channel hybrid FULLY_CONNECTED (version 12) needs
        # TFLite 2.17, the per-tensor one (version 9) runs on tflite-runtime 2.14 (the 32-bit Pi's runtime).
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif variant is Variant.INT8:  # calibrate only; quantize_int8 then quantizes, float heads excepted
        configure_int8(converter, calibration)
    elif variant is Variant.INT16X8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [
            tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
    calibrated = None
    try:
        flatbuffer = converter.convert()
        note = ""
        if variant is Variant.DYNAMIC and calibration is not None:
            flatbuffer, note = dynamic_weights(saved_model_dir, flatbuffer, calibration)
        if variant is Variant.INT8:
            calibrated = flatbuffer
            flatbuffer = quantize_int8(flatbuffer)
        elif variant is Variant.FP16:
            plain = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
            flatbuffer = float32_biases(flatbuffer, plain)
    except Exception as exc:  # the converter raises ConverterError / RuntimeError / ValueError
        interrupt.check()  # a Ctrl+C the converter turned into an error stops the run, not just this variant
        return TFLiteResult(variant=variant, path=out,
                            error=f"the TFLite converter cannot make {variant.value}: {_first_error(str(exc))}")
    out.write_bytes(flatbuffer)
    return TFLiteResult(variant=variant, path=out, ops=operators(flatbuffer), note=note,
                        calibrated=calibrated)


REASON_LIMIT = 240  # characters of the converter's reason a skip keeps


def _strip_loc(text: str) -> tuple[str, str]:
    """``text`` without a leading MLIR ``loc(...)`` (balanced parentheses) and its colon, and the op the location
    names (``fused["MatMul:", "model/dense_1/MatMul@__inference..."]`` -> ``model/dense_1/MatMul``; "" if none)."""
    text = text.strip()
    if not text.startswith("loc("):
        return text, ""
    depth, end, quoted = 0, len(text), False
    for i, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                end = i + 1
                break
    location = re.search(r'fused\["[^"]*",\s*"([^"@]+)', text[:end]) or re.search(r'loc\("([^"@]+)', text[:end])
    return text[end:].lstrip(" :").strip(), location.group(1) if location else ""


def _first_error(text: str) -> str:
    """The converter's cause, one short line. Its messages are long MLIR dumps: ``<unknown>:0: error:
    loc(callsite(...)): 'tf.MatMul' op is neither a custom op nor a flex op``, then notes, then more errors. Kept:
    each ``error:``'s message without its ``loc(...)`` prefix, each sentence once, the first with the op it names
    (and that the op computes in float16, when its operation says so), cut at a word to ``REASON_LIMIT``."""
    lines = text.splitlines()
    causes: list[str] = []
    where, half = "", False
    for index, line in enumerate(lines):
        if "error:" not in line:
            continue
        message, location = _strip_loc(line.split("error:", 1)[1])
        if not message or message.endswith(":"):  # a header ("failed while converting: 'main':"), details below
            continue
        if not causes:
            where = location
            notes = itertools.takewhile(lambda ln: "error:" not in ln, lines[index + 1:])
            half = any("see current operation" in ln and re.search(r"[x<]f16>", ln) for ln in notes)
        causes.append(message)
    if not causes:
        first = next((ln for ln in lines if ln.strip()), "")
        causes = [_strip_loc(first)[0] or first.strip()]
    units: list[str] = []
    for cause in causes:
        for sentence in " ".join(cause.split()).split(". "):
            sentence = sentence.strip().rstrip(".")
            if sentence and sentence not in units:
                units.append(sentence)
    if not units:
        return ""
    detail = ", ".join(d for d in (f"at {where}" if where else "", "on float16 tensors" if half else "") if d)
    if detail:
        units[0] += f" ({detail})"
    if half:
        units.insert(1, "TFLite has no float16 kernel for it: re-save a mixed_float16 model under the float32 "
                        "dtype policy")
    reason = ". ".join(units) + ("." if causes[-1].rstrip().endswith(".") or len(units) > 1 else "")
    if len(reason) <= REASON_LIMIT:
        return reason
    return reason[:REASON_LIMIT].rsplit(" ", 1)[0].rstrip(" ,;:.(") + " …"


def operators(flatbuffer: bytes) -> list[dict[str, Any]]:
    """The operators (builtin name, version) a TFLite model uses, sorted (``edge.tflite_file.tflite_ops``)."""
    from edge.tflite_file import tflite_ops

    return tflite_ops(flatbuffer)


def check_calibration_rows(rows: int) -> None:
    """Raises DeployKitError when DATA is too small to calibrate int8."""
    if rows < MIN_CALIBRATION_ROWS:
        raise DeployKitError(
            f"DATA has {rows} rows; int8 calibration needs at least {MIN_CALIBRATION_ROWS}; pass more rows with --data"
        )
