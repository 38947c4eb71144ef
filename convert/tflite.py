"""TFLite artifacts: fp32, fp16, dynamic range, full-integer int8 and int16x8, from a SavedModel.

Callers pass and receive real values: quantized variants keep float32 inputs and outputs (the
interpreter quantizes at the edges). Quantized variants are converted from the folded, GPTQ-rounded
model (``convert.fold``, ``convert.rounding``) and carry the runner's input transform.

Beyond the converter's defaults: int8 runs a softmax / logistic / tanh that produces a model output
in float32 (:func:`float_heads`) and can keep more operators in float (:func:`quantize_calibrated`, the
hook of ``convert.mixed_precision``), fp16 keeps biases in float32 (:func:`float32_biases`), and
calibration sees every DATA row up to ``CALIBRATION_ROWS`` (a row outside the calibrated ranges
clips). The copy with fixed-length RNNs unrolled is ``convert.keras_graph.unrolled``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from convert import interrupt
from convert.errors import DeployKitError

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
    elif variant is Variant.INT8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # calibrate only; _quantize_int8 then quantizes as the converter would, float heads excepted
        converter._experimental_calibrate_only = True
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
            flatbuffer, note = _dynamic_weights(saved_model_dir, flatbuffer, calibration)
        if variant is Variant.INT8:
            calibrated = flatbuffer
            flatbuffer = _quantize_int8(flatbuffer)
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


def _dynamic_weights(saved_model_dir: Path, per_tensor: bytes,
                     calibration: Callable[[], Iterator[dict[str, np.ndarray]]]) -> tuple[bytes, str]:
    """Per-tensor Dense weights when they hold the quantized bound on the calibration rows, else per-channel.

    Per-tensor dynamic range (one scale per Dense kernel, FULLY_CONNECTED version 9) runs on tflite-runtime
    2.14; per-channel (version 12) needs TFLite 2.17, i.e. LiteRT. One scale per kernel loses the channels
    whose weights are much smaller than the kernel's largest (12% of the output range on a model whose
    second half of a Dense's channels is 100x smaller, 0.3% per-channel). Both are measured against the
    plain float32 conversion on the calibration rows (up to 2,000 DATA rows and every golden row; a
    subset for large inputs, see ``_check_rows``): max|y - ref| over each output's range there, against the variant's declared
    ``max_range_fraction``. Per-channel is taken only when per-tensor misses and per-channel holds; its
    ``min_runtime_version`` (2.17.0) then declares the artifact LiteRT-only. When neither holds, per-tensor
    is kept (it runs everywhere) and the note gives both errors.

    Returns:
        the flatbuffer and a note ('' when per-tensor holds).
    """
    import tensorflow as tf

    from edge.tolerance import for_variant

    bound = float(for_variant(Variant.DYNAMIC.value)["max_range_fraction"])
    rows = _check_rows(list(calibration()))
    if not rows:
        return per_tensor, ""
    plain = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir)).convert()
    reference = _run_rows(plain, rows)
    if reference is None:
        return per_tensor, ""
    tensor_error = _range_fraction(reference, _run_rows(per_tensor, rows))
    if tensor_error is None or tensor_error <= bound:
        return per_tensor, ""
    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    per_channel = converter.convert()
    channel_error = _range_fraction(reference, _run_rows(per_channel, rows))
    if channel_error is None or channel_error > bound:  # neither holds: keep the one every runtime can run
        return per_tensor, (f"per-tensor Dense weights miss the bound on the calibration rows ({100 * tensor_error:.3g}% "
                            "of the output range)" + (f"; per-channel too ({100 * channel_error:.3g}%)"
                                                      if channel_error is not None else ""))
    return per_channel, ("LiteRT only: per-channel Dense weights (FULLY_CONNECTED version 12 needs TFLite >= 2.17); "
                         f"per-tensor missed the bound on the calibration rows ({100 * tensor_error:.3g}% of the output "
                         f"range vs {100 * channel_error:.3g}% per-channel)")


DYNAMIC_CHECK_VALUES = 16_000_000  # input values per batch (64 MB of float32): image models check a subset
GOLDEN_TAIL = 64  # representative() yields the golden rows last; these are always checked


def _check_rows(rows: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """The calibration rows to measure on: all of them, or evenly spaced ones plus the last ``GOLDEN_TAIL``
    when their inputs exceed ``DYNAMIC_CHECK_VALUES`` values."""
    if not rows:
        return rows
    per_row = sum(int(np.asarray(v).size) for v in rows[0].values())
    keep = max(GOLDEN_TAIL, DYNAMIC_CHECK_VALUES // max(per_row, 1))
    if len(rows) <= keep:
        return rows
    head, tail = rows[:-GOLDEN_TAIL], rows[-GOLDEN_TAIL:]
    picks = np.linspace(0, len(head) - 1, num=max(keep - GOLDEN_TAIL, 1)).round().astype(int)
    return [head[i] for i in np.unique(picks)] + tail


def _run_rows(flatbuffer: bytes, rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray] | None:
    """A model's outputs (float64) on single-row inputs: one batch, or row by row when the batch is fixed;
    None when it cannot run them."""
    import tensorflow as tf

    try:
        interpreter = tf.lite.Interpreter(model_content=flatbuffer)
        runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    except (ValueError, RuntimeError, StopIteration):
        return None
    try:
        batch = runner(**{name: np.concatenate([row[name] for row in rows]) for name in rows[0]})
        return {key: np.asarray(value, dtype=np.float64) for key, value in batch.items()}
    except (ValueError, RuntimeError):
        pass
    outputs: dict[str, list[np.ndarray]] = {}
    try:
        for row in rows:
            for key, value in runner(**row).items():
                outputs.setdefault(key, []).append(np.asarray(value, dtype=np.float64))
    except (ValueError, RuntimeError, KeyError):
        return None
    return {key: np.concatenate(values) for key, values in outputs.items()}


def _range_fraction(reference: dict[str, np.ndarray], actual: dict[str, np.ndarray] | None) -> float | None:
    """The largest max|y - ref| / (max ref - min ref) over the outputs (None if they cannot be compared)."""
    if actual is None or set(actual) != set(reference):
        return None
    worst = 0.0
    for key, ref in reference.items():
        span = float(ref.max() - ref.min()) if ref.size else 0.0
        if span > 0 and actual[key].shape == ref.shape:
            worst = max(worst, float(np.abs(actual[key] - ref).max()) / span)
    return worst


def quantize_calibrated(calibrated: bytes, float_nodes: list[str] | None = None, numeric_verify: bool = False) -> bytes:
    """Full-integer int8 from a calibrated model (int8 weights and activations, float32 edges), as
    ``TFLiteConverter`` makes it, with the :func:`float_heads` and ``float_nodes`` (output tensor names)
    left in float32.

    ``numeric_verify`` adds TF's NumericVerify operators (the per-layer check of
    ``convert.mixed_precision.layer_errors``). int16x8 has no such entry: ``mlir_quantize``'s int16 path writes
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


def _quantize_int8(calibrated: bytes) -> bytes:
    """Full-integer int8 from a calibrated model, as ``TFLiteConverter`` does it (per-channel weights,
    float32 inputs and outputs), except the :func:`float_heads`, which stay float32."""
    return quantize_calibrated(calibrated)


def _builtin(model: Any, op: Any) -> int:
    c = model.operatorCodes[op.opcodeIndex]
    return max(int(c.builtinCode), int(c.deprecatedBuiltinCode))


def _constant(model: Any, tensor: Any, dtype: Any) -> np.ndarray | None:
    data = model.buffers[tensor.buffer].data if tensor.buffer < len(model.buffers) else None
    if data is None or len(data) == 0:
        return None
    return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), dtype=dtype)


@dataclass
class HalfConstant:
    """A constant the float16 model stores in half precision, matched to its float32 twin in the plain model."""

    graph: int          # subgraph index
    tensor16: int       # the DEQUANTIZE output tensor in the float16 model
    tensor32: int       # the float32 constant tensor in the plain model
    dequantize: Any     # the float16 model's DEQUANTIZE operator
    value: np.ndarray   # the float32 value (flat)


def half_constants(m16: Any, m32: Any) -> list[HalfConstant] | None:
    """Match every float16 constant of a float16 model (behind a DEQUANTIZE) to the plain model's float32
    constant, operator by operator; None when the two graphs do not line up exactly (same operators in the
    same order, and every float16 value the float32 value rounded)."""
    from tensorflow.lite.python import schema_py_generated as schema

    if len(m16.subgraphs) != len(m32.subgraphs):
        return None
    found: list[HalfConstant] = []
    for index, (g16, g32) in enumerate(zip(m16.subgraphs, m32.subgraphs)):
        dequantized = {}  # output tensor -> DEQUANTIZE op, for float16 constants
        for op in g16.operators:
            if _builtin(m16, op) == schema.BuiltinOperator.DEQUANTIZE and len(op.inputs) == 1:
                source = g16.tensors[op.inputs[0]]
                if source.type == schema.TensorType.FLOAT16 and _constant(m16, source, np.float16) is not None:
                    dequantized[int(op.outputs[0])] = op
        ops16 = [op for op in g16.operators if not any(op is d for d in dequantized.values())]
        if len(ops16) != len(g32.operators):
            return None
        for op16, op32 in zip(ops16, g32.operators):
            if _builtin(m16, op16) != _builtin(m32, op32) or len(op16.inputs) != len(op32.inputs):
                return None
            for t16, t32 in zip(op16.inputs, op32.inputs):
                deq = dequantized.get(int(t16))
                if deq is None or t32 < 0:
                    continue
                half = _constant(m16, g16.tensors[deq.inputs[0]], np.float16)
                full = g32.tensors[t32]
                value = _constant(m32, full, np.float32) if full.type == schema.TensorType.FLOAT32 else None
                if value is None or value.shape != half.shape or not np.array_equal(value.astype(np.float16), half):
                    return None
                found.append(HalfConstant(index, int(t16), int(t32), deq, value))
    return found


def float32_biases(fp16: bytes, fp32: bytes) -> bytes:
    """The float16 model with its rank-1 constants (biases) restored to their float32 values.

    The converter stores every float constant as float16 behind a DEQUANTIZE. A bias's rounding
    (relative 2^-11) adds straight to the layer's output, and biases are a few hundred bytes, so
    they stay float32 (as int8 keeps biases in int32). The float32 values come from the plain
    conversion of the same model, matched operator by operator (:func:`half_constants`); anything that
    does not match exactly leaves the converter's model as it is.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    m16 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp16))
    m32 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp32))
    pairs = half_constants(m16, m32)
    if pairs is None:
        return fp16
    drop: dict[int, list[Any]] = {}
    for pair in pairs:
        if len(m32.subgraphs[pair.graph].tensors[pair.tensor32].shape) != 1:
            continue
        if any(d is pair.dequantize for d in drop.get(pair.graph, [])):
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(pair.value.astype("<f4").tobytes(), dtype=np.uint8)
        m16.buffers.append(buffer)
        m16.subgraphs[pair.graph].tensors[pair.tensor16].buffer = len(m16.buffers) - 1
        drop.setdefault(pair.graph, []).append(pair.dequantize)
    if not drop:
        return fp16
    for index, ops in drop.items():
        graph = m16.subgraphs[index]
        graph.operators = [op for op in graph.operators if not any(op is d for d in ops)]
    return _serialize(m16)


def _serialize(model: Any) -> bytes:
    """Pack a TFLite model object; byte vectors (buffers) 16-byte aligned, as the converter writes them."""
    import flatbuffers

    class Aligned(flatbuffers.Builder):
        def StartVector(self, elemSize, numElems, alignment):  # noqa: N802,N803 - flatbuffers' names
            if elemSize == 1:
                alignment = max(alignment, 16)
            return super().StartVector(elemSize, numElems, alignment)

    builder = Aligned(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _first_error(text: str) -> str:
    """The converter's first ``error:`` line (its messages are long MLIR dumps), each sentence once, cut to one
    short line."""
    line = next((ln.split("error:", 1)[1] for ln in text.splitlines() if "error:" in ln), text)
    sentences = [s.strip() for s in " ".join(line.split()).split(". ") if s.strip()]
    unique = list(dict.fromkeys(s.rstrip(".") for s in sentences))
    return (". ".join(unique) + ("." if line.strip().endswith(".") else ""))[:240]


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
