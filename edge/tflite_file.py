"""The one reader of ``.tflite`` files (the TFLite flatbuffer), without TensorFlow: operators and their
versions, the tensor types of each operator (its kernel), metadata, and the minimum runtime a model needs.

Used by the edge runner (``edge.interpreter``), by convert (the manifest's ``runtime`` record) and by the tests.
Every reader takes a path or the file's bytes and raises ``EdgeError`` for a file that is not a readable TFLite
model. The builtin operators' names are ``edge._opnames``, copied from the TFLite schema (a test checks them
against LiteRT's own schema module).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from edge.errors import EdgeError

Source = Union[str, Path, bytes, bytearray]


class _Table:
    """A flatbuffer table inside ``buf`` at absolute position ``pos`` (read-only, bounds-checked)."""

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        vtable = pos - _i32(buf, pos)
        self.vtable = vtable
        self.vsize = _u16(buf, vtable)

    def _field(self, index: int) -> int:
        entry = 4 + 2 * index
        if entry >= self.vsize:
            return 0
        offset = _u16(self.buf, self.vtable + entry)
        return self.pos + offset if offset else 0

    def scalar(self, index: int, fmt: str, default: int) -> int:
        at = self._field(index)
        return struct.unpack_from("<" + fmt, self.buf, at)[0] if at else default

    def _indirect(self, index: int) -> int:
        at = self._field(index)
        return at + _u32(self.buf, at) if at else 0

    def string(self, index: int) -> str | None:
        at = self._indirect(index)
        if not at:
            return None
        length = _u32(self.buf, at)
        return self.buf[at + 4 : at + 4 + length].decode("utf-8", errors="replace")

    def tables(self, index: int) -> list["_Table"]:
        at = self._indirect(index)
        if not at:
            return []
        count = _u32(self.buf, at)
        out = []
        for i in range(count):
            elem = at + 4 + 4 * i
            out.append(_Table(self.buf, elem + _u32(self.buf, elem)))
        return out

    def ints(self, index: int) -> list[int]:
        """A vector of int32 (``[int]`` in the schema)."""
        at = self._indirect(index)
        if not at:
            return []
        count = _u32(self.buf, at)
        return list(struct.unpack_from(f"<{count}i", self.buf, at + 4))

    def bytes_vector(self, index: int) -> bytes:
        at = self._indirect(index)
        if not at:
            return b""
        count = _u32(self.buf, at)
        return self.buf[at + 4 : at + 4 + count]


def _u16(buf: bytes, at: int) -> int:
    return struct.unpack_from("<H", buf, at)[0]


def _u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _i32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<i", buf, at)[0]


# Field indices of the TFLite schema (schema.fbs) used here.
_MODEL_OPERATOR_CODES, _MODEL_SUBGRAPHS, _MODEL_BUFFERS, _MODEL_METADATA = 1, 2, 4, 6
_SUBGRAPH_TENSORS, _SUBGRAPH_OUTPUTS, _SUBGRAPH_OPERATORS = 0, 2, 3
_TENSOR_TYPE, _TENSOR_NAME = 1, 3
_OPERATOR_OPCODE_INDEX, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS = 0, 1, 2
_OPCODE_DEPRECATED, _OPCODE_CUSTOM, _OPCODE_VERSION, _OPCODE_BUILTIN = 0, 1, 2, 3
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA = 0
_CUSTOM = 32
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


def _label(source: Source) -> str:
    return "the TFLite model" if isinstance(source, (bytes, bytearray)) else str(source)


def _model(source: Source) -> _Table:
    """The root ``Model`` table of a .tflite file (a path) or of its bytes.

    Raises:
        EdgeError: the file cannot be read or is not a TFLite flatbuffer.
    """
    path = _label(source)
    if isinstance(source, (bytes, bytearray)):
        buf = bytes(source)
    else:
        try:
            buf = Path(source).read_bytes()
        except OSError as exc:
            raise EdgeError(f"cannot read {path}: {exc.strerror}") from None
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise EdgeError(f"{path} is not a TFLite model (no TFL3 identifier); re-create it")
    try:
        return _Table(buf, _u32(buf, 0))
    except struct.error:
        raise EdgeError(f"{path} is a truncated TFLite model; re-create it") from None


def op_name(builtin_code: int, custom_code: str | None = None) -> str:
    """The schema name of a builtin operator code (``CUSTOM:<name>`` for custom ops)."""
    from edge._opnames import BUILTIN_OPERATORS

    if builtin_code == _CUSTOM:
        return f"CUSTOM:{custom_code or ''}"
    if 0 <= builtin_code < len(BUILTIN_OPERATORS):
        return BUILTIN_OPERATORS[builtin_code]
    return f"BUILTIN_{builtin_code}"


def _op_codes(model: _Table) -> list[tuple[str, int]]:
    """``(name, version)`` of every operator code, in the file's order (operators index into it).

    The code is ``max(builtin_code, deprecated_builtin_code)`` as the schema prescribes (old files
    only set the byte-wide deprecated field; new ones set 127 there and the real code in the int32).
    """
    codes = []
    for code in model.tables(_MODEL_OPERATOR_CODES):
        deprecated = code.scalar(_OPCODE_DEPRECATED, "b", 0)
        builtin = code.scalar(_OPCODE_BUILTIN, "i", 0)
        number = max(builtin, deprecated)
        custom = code.string(_OPCODE_CUSTOM) if number == _CUSTOM else None
        codes.append((op_name(number, custom), int(code.scalar(_OPCODE_VERSION, "i", 1))))
    return codes


def tflite_ops(path: Source) -> list[dict[str, Any]]:
    """The operators a .tflite file uses, with their versions, read from the flatbuffer.

    Returns:
        sorted, de-duplicated ``[{"name": "FULLY_CONNECTED", "version": 9}, ...]``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(path)
    try:
        seen = set(_op_codes(model))
    except (struct.error, IndexError):
        raise EdgeError(f"{_label(path)} is a truncated TFLite model; re-create it") from None
    return [{"name": name, "version": version} for name, version in sorted(seen)]


# The schema's TensorType enum, indexed by value.
TENSOR_TYPES: tuple[str, ...] = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8",
    "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4", "bfloat16",
)


@dataclass(frozen=True)
class Operator:
    """One operator of a model, in its subgraph's order: its name and version, the types of its input and
    output tensors (``None`` for an absent optional input), its output tensors' names, and whether one of
    those is an output of its subgraph."""

    name: str
    version: int
    inputs: tuple[str | None, ...]
    outputs: tuple[str | None, ...]
    output_names: tuple[str, ...]
    writes_output: bool


def operators(path: Source) -> list[Operator]:
    """Every operator of every subgraph, in the file's order.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(path)

    def type_name(tensors: list[_Table], index: int) -> str | None:
        if index < 0:
            return None
        code = tensors[index].scalar(_TENSOR_TYPE, "b", 0)
        return TENSOR_TYPES[code] if 0 <= code < len(TENSOR_TYPES) else f"type_{code}"

    found = []
    try:
        codes = _op_codes(model)
        for graph in model.tables(_MODEL_SUBGRAPHS):
            tensors = graph.tables(_SUBGRAPH_TENSORS)
            graph_outputs = set(graph.ints(_SUBGRAPH_OUTPUTS))
            for op in graph.tables(_SUBGRAPH_OPERATORS):
                name, version = codes[op.scalar(_OPERATOR_OPCODE_INDEX, "I", 0)]
                ins, outs = op.ints(_OPERATOR_INPUTS), op.ints(_OPERATOR_OUTPUTS)
                found.append(Operator(name, version, tuple(type_name(tensors, i) for i in ins),
                                      tuple(type_name(tensors, i) for i in outs),
                                      tuple(tensors[i].string(_TENSOR_NAME) or "" for i in outs if i >= 0),
                                      any(i in graph_outputs for i in outs)))
    except (struct.error, IndexError):
        raise EdgeError(f"{_label(path)} is a truncated TFLite model; re-create it") from None
    return found


def tflite_kernels(path: Source) -> list[dict[str, Any]]:
    """The kernels a .tflite file needs: each operator with the types of its input and output tensors.

    An absent optional input (index -1) is ``None`` in ``inputs``.

    Returns:
        sorted, de-duplicated ``[{"name": "GELU", "version": 2, "inputs": ["int16"], "outputs": ["int16"]}, ...]``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    seen = {(op.name, op.version, op.inputs, op.outputs) for op in operators(path)}
    return [{"name": n, "version": v, "inputs": list(i), "outputs": list(o)}
            for n, v, i, o in sorted(seen, key=lambda k: (k[0], k[1], [t or "" for t in k[2]], [t or "" for t in k[3]]))]


def tflite_metadata(path: Source) -> dict[str, bytes]:
    """The model's metadata entries (name -> raw buffer bytes), e.g. ``min_runtime_version``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(path)
    try:
        buffers = model.tables(_MODEL_BUFFERS)
        out = {}
        for entry in model.tables(_MODEL_METADATA):
            name = entry.string(_METADATA_NAME) or ""
            index = entry.scalar(_METADATA_BUFFER, "I", 0)
            out[name] = buffers[index].bytes_vector(_BUFFER_DATA) if index < len(buffers) else b""
        return out
    except (struct.error, IndexError):
        raise EdgeError(f"{_label(path)} is a truncated TFLite model; re-create it") from None


def kernel_needs(path: Source) -> list[dict[str, Any]]:
    """The entries of the kit's kernel table (``edge._kernels.KERNEL_NEEDS``) that a .tflite file needs.

    Returns:
        ``[{"op": "GELU", "input_type": "int16", "min_tflite_runtime": None, "min_ai_edge_litert": "1.3.0"}]``
        and the like (``"version"`` instead of ``"input_type"`` for an op-version entry); a ``None`` minimum
        means no release of that runtime line has the kernel.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    from edge._kernels import KERNEL_NEEDS

    kernels = tflite_kernels(path)
    out = []
    for need in KERNEL_NEEDS:
        if any(k["name"] == need.op
               and (need.input_type is None or (k["inputs"][:1] == [need.input_type]))
               and (need.version is None or k["version"] >= need.version) for k in kernels):
            entry: dict[str, Any] = {"op": need.op}
            entry.update({"input_type": need.input_type} if need.input_type else {"version": need.version})
            entry.update({"min_tflite_runtime": need.tflite, "min_ai_edge_litert": need.ai_edge_litert})
            out.append(entry)
    return out


def tflite_min_runtime(path: Source) -> str | None:
    """The minimum TFLite runtime a model needs (``"2.15.0"``), or None when nothing says.

    The ``min_runtime_version`` the TFLite converter stored in the model, raised to the minimum of every
    ``kernel_needs`` entry that some TFLite release has (entries no TFLite release has are refused
    through ``runtime.kernels`` instead; a version number would be a guess).

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    raw = tflite_metadata(path).get("min_runtime_version")
    text = raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip() if raw else ""
    found = [text] if text else []
    found += [n["min_tflite_runtime"] for n in kernel_needs(path) if n["min_tflite_runtime"]]
    best: str | None = None
    for version in found:
        try:
            if best is None or parse_version(version) > parse_version(best):
                best = version
        except ValueError:
            continue
    return best if best is not None else (text or None)


def parse_version(text: str) -> tuple[int, ...]:
    """``"2.14.0"`` -> ``(2, 14, 0)``; suffixes such as ``rc1`` or ``.dev`` are ignored.

    Raises:
        ValueError: no leading number.
    """
    parts = []
    for piece in str(text).strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
    if not parts:
        raise ValueError(f"not a version: {text!r}")
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)
