"""The float16 variant's float32 biases: float16 constants matched to the plain model's float32 ones, operator
by operator, through TF's TFLite schema objects (also the float16 precision twin's source, ``convert.twin``), and
any chosen float16 constants restored to float32 the same way (the float16 search's, ``convert.fp16_search``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numpy as np


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


FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504


def as_float16(value: np.ndarray) -> np.ndarray:
    """``value`` rounded to float16 as the TFLite converter stores it: finite values beyond float16's range
    saturate to ±65504 (numpy's cast makes them inf); infinities and NaN stay what they are."""
    value = np.asarray(value, dtype=np.float32)
    return np.where(np.isfinite(value), np.clip(value, -FLOAT16_MAX, FLOAT16_MAX), value).astype(np.float16)


def half_constants(m16: Any, m32: Any) -> list[HalfConstant] | None:
    """Match every float16 constant of a float16 model (behind a DEQUANTIZE) to the plain model's float32
    constant, operator by operator; None when the two graphs do not line up exactly (same operators in the
    same order, and every float16 value the float32 value rounded: ``as_float16``)."""
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
                if value is None or value.shape != half.shape or not np.array_equal(as_float16(value), half):
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
    return _restore(fp16, fp32, lambda _, pair, m32: len(m32.subgraphs[pair.graph].tensors[pair.tensor32].shape) == 1)


def float32_constants(fp16: bytes, fp32: bytes, keep: Iterable[int]) -> bytes:
    """The float16 model with the float16 constants numbered ``keep`` restored to float32.

    The numbers index :func:`half_constants` of the two models (the float16 constants, in graph order). Each
    restored constant is restored as :func:`float32_biases` restores a bias: the DEQUANTIZE's output tensor gets
    the plain model's float32 buffer and the DEQUANTIZE is dropped; the half-precision copy it read is emptied
    (no operator reads it any more), so the file grows by two bytes per restored value, not four. With nothing
    to restore (or graphs that do not match) the float16 model is returned as it is.
    """
    wanted = {int(k) for k in keep}
    return _restore(fp16, fp32, lambda number, *_: number in wanted, empty_half=True)


def _restore(fp16: bytes, fp32: bytes, chosen: Callable[[int, HalfConstant, Any], bool],
             empty_half: bool = False) -> bytes:
    """The float16 model with the float16 constants ``chosen(number, pair, plain model)`` picks (``number``: the
    constant's place in :func:`half_constants`' graph order) restored to their float32 values; ``empty_half`` also empties the half-precision buffer each
    restored DEQUANTIZE read (when no other tensor uses it)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    m16 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp16))
    m32 = flatbuffer_utils.convert_bytearray_to_object(bytearray(fp32))
    pairs = half_constants(m16, m32)
    if pairs is None:
        return fp16
    drop: dict[int, list[Any]] = {}
    for number, pair in enumerate(pairs):
        if not chosen(number, pair, m32):
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
    if empty_half:
        used = {int(t.buffer) for g in m16.subgraphs for op in g.operators
                for t in (g.tensors[i] for i in list(op.inputs) + list(op.outputs) if i >= 0)}
        for index, ops in drop.items():
            graph = m16.subgraphs[index]
            for op in ops:
                half = int(graph.tensors[op.inputs[0]].buffer)
                if half not in used:
                    m16.buffers[half].data = None
    return serialize(m16)


def serialize(model: Any) -> bytes:
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
