"""Pick a TFLite interpreter, read a .tflite file's op codes without TensorFlow, check runtime needs.

Order: ``ai_edge_litert`` -> ``tflite_runtime`` -> ``tensorflow.lite`` (the last imported lazily, only
here, and only when neither light runtime is installed). ``DEPLOYKIT_EDGE_RUNTIME`` forces one of them
(tests use it to run the same bundle on both light runtimes).

The runtime check has three stages:

1. before loading, ``can_run`` compares the artifact's ``runtime.min_tflite_runtime`` (the converter's
   ``min_runtime_version`` metadata, raised by the kit's kernel table, see ``tflite_min_runtime``) with
   the interpreter's TFLite version, and each of its ``runtime.kernels`` (``kernel_needs``) with the
   interpreter's own version;
2. before loading, ``make_interpreter`` reads the file's kernels (operator x input type) and refuses
   the ones in ``edge._kernels.KERNEL_NEEDS`` the runtime lacks, so a bundle whose manifest predates
   the table is refused with the same message;
3. while loading, the interpreter itself is the authority on op versions: its "Didn't find op for
   builtin opcode" error is turned into ``RuntimeTooOld`` naming the op, the version and the runtime.

No full per-runtime table of op versions is kept: the kernel table only lists what was measured to
fail although the converter's op version and metadata allow it.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from edge.errors import EdgeError, RuntimeTooOld

RUNTIME_ORDER = ("ai_edge_litert", "tflite_runtime", "tensorflow")
RUNTIME_ENV = "DEPLOYKIT_EDGE_RUNTIME"

# ai-edge-litert has its own version numbers. Its first release (1.0) was cut from the TensorFlow 2.18
# sources, so every ai-edge-litert runs what TFLite 2.18 runs: used as its TFLite-equivalent version.
LITERT_TFLITE_FLOOR = "2.18.0"


@dataclass(frozen=True)
class Runtime:
    """An importable interpreter: its module name, version, TFLite-equivalent version and class."""

    name: str
    version: str
    tflite_version: str
    interpreter_class: Callable[..., Any]

    def describe(self) -> str:
        """``ai_edge_litert 2.3.0`` and the like."""
        return f"{self.name} {self.version}"


def _dist_version(dist: str, module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as meta_version

        return meta_version(dist)
    except Exception:  # noqa: BLE001 - an unknown version is reported as such
        return "unknown"


def _load(name: str) -> Runtime:
    """Import one runtime. Raises ImportError when it is not installed."""
    if name == "ai_edge_litert":
        module = importlib.import_module("ai_edge_litert.interpreter")
        version = _dist_version("ai-edge-litert", importlib.import_module("ai_edge_litert"))
        return Runtime(name, version, LITERT_TFLITE_FLOOR, module.Interpreter)
    if name == "tflite_runtime":
        module = importlib.import_module("tflite_runtime.interpreter")
        version = _dist_version("tflite-runtime", importlib.import_module("tflite_runtime"))
        return Runtime(name, version, version, module.Interpreter)
    if name == "tensorflow":
        tf = importlib.import_module("tensorflow")  # the last fallback, never imported otherwise
        return Runtime(name, tf.__version__, tf.__version__, tf.lite.Interpreter)
    raise ImportError(name)


def pick(preferred: str | None = None) -> Runtime:
    """The first importable runtime in ``RUNTIME_ORDER`` (or the one named by ``preferred`` / the env).

    Raises:
        EdgeError: no interpreter is installed, or the requested one is unknown or missing.
    """
    wanted = preferred or os.environ.get(RUNTIME_ENV) or None
    if wanted:
        if wanted not in RUNTIME_ORDER:
            raise EdgeError(f"unknown runtime {wanted!r}; choose one of {', '.join(RUNTIME_ORDER)}")
        try:
            return _load(wanted)
        except ImportError as exc:
            raise EdgeError(f"runtime {wanted} is not installed ({exc}); pip install it or unset {RUNTIME_ENV}") from None
    for name in RUNTIME_ORDER:
        try:
            return _load(name)
        except ImportError:
            continue
    raise EdgeError(
        "no TFLite interpreter is installed; pip install ai-edge-litert (x86_64, aarch64) or tflite-runtime==2.14.0 "
        "(32-bit ARM, Python <= 3.11)"
    )


# --------------------------------------------------------------------------- versions


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


def _describe_need(need: Mapping[str, Any]) -> str:
    if need.get("input_type"):
        return f"{need.get('op')} on {need['input_type']} tensors"
    return f"{need.get('op')} version {need.get('version')}"


def _kernel_refusal(relpath: str, need: Mapping[str, Any], runtime_name: str, runtime_version: str) -> str | None:
    """Why the runtime cannot run one ``kernel_needs`` entry: one line naming the op, the type and the
    minimum version; None when it can (or when the versions cannot be compared)."""
    from edge._kernels import LAST_CHECKED

    litert = runtime_name == "ai_edge_litert"
    mine = need.get("min_ai_edge_litert") if litert else need.get("min_tflite_runtime")
    other = need.get("min_tflite_runtime") if litert else need.get("min_ai_edge_litert")
    if mine:
        try:
            if parse_version(runtime_version) >= parse_version(mine):
                return None
        except ValueError:
            return None
    what = f"{relpath} runs {_describe_need(need)}"
    if not mine and not other:
        return f"{what}, which no TFLite runtime has a kernel for (checked {LAST_CHECKED}); use another variant"
    have = f"the installed interpreter is {runtime_name} {runtime_version}"
    if mine:
        line = "ai-edge-litert" if litert else "TFLite runtime"
        fix = "pip install -U ai-edge-litert" if litert else "use ai-edge-litert (64-bit OS)"
        return f"{what}, which needs {line} >= {mine}; {have}; {fix} or another variant"
    if litert:
        return (f"{what}, which needs TFLite runtime >= {other} (no ai-edge-litert release has that kernel; checked "
                f"{LAST_CHECKED}); {have}; use another variant")
    return (f"{what}, which needs ai-edge-litert >= {other} (no TensorFlow Lite release has that kernel; checked "
            f"{LAST_CHECKED}); {have}; use ai-edge-litert (64-bit OS) or another variant")


def can_run(artifact: Mapping[str, Any], runtime_name: str, runtime_version: str) -> tuple[bool, str]:
    """Whether a runtime can run an artifact, judged from the manifest alone; ``(ok, reason)``.

    Checks ``runtime.kernels`` (kernels the kit's table says some runtimes lack, see ``kernel_needs``),
    then ``runtime.min_tflite_runtime``. Missing or unreadable fields are treated leniently (``ok`` with a
    reason saying what was not checked); the interpreter's own load remains the final op-version check.
    """
    needs = artifact.get("runtime") or {}
    relpath = artifact.get("path", "the artifact")
    for need in needs.get("kernels") or []:
        refusal = _kernel_refusal(relpath, need, runtime_name, runtime_version)
        if refusal:
            return False, refusal
    minimum = needs.get("min_tflite_runtime")
    if not minimum:
        return True, "the manifest records no minimum runtime; not checked"
    if runtime_name == "ai_edge_litert":
        have = LITERT_TFLITE_FLOOR
        label = f"ai_edge_litert {runtime_version} (TFLite >= {LITERT_TFLITE_FLOOR})"
    else:
        have = runtime_version
        label = f"{runtime_name} {runtime_version}"
    try:
        need_t, have_t = parse_version(minimum), parse_version(have)
    except ValueError:
        return True, f"cannot compare versions {minimum!r} and {have!r}; not checked"
    if have_t < need_t:
        return False, (
            f"{relpath} needs TFLite runtime >= {minimum}, "
            f"the installed interpreter is {label}; install a newer one "
            "(pip install -U ai-edge-litert; tflite-runtime stops at 2.14) or use another variant"
        )
    return True, f"needs TFLite runtime >= {minimum}, have {label}"


def check_runtime(artifact: Mapping[str, Any], runtime: Runtime) -> None:
    """Refuse an artifact the runtime cannot run.

    Raises:
        RuntimeTooOld: the manifest's minimum runtime is newer than the interpreter.
    """
    ok, reason = can_run(artifact, runtime.name, runtime.version)
    if not ok:
        raise RuntimeTooOld(reason)


_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence fd 2 while the C++ runtime prints its "Created TensorFlow Lite XNNPACK delegate" line."""
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):
            yield
            return
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
            os.close(devnull)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


_MISSING_OP = re.compile(r"Didn't find (?:op for builtin opcode|custom op for name) '([^']+)'(?: version '(\d+)')?")


def make_interpreter(runtime: Runtime, path: Path, relpath: str, num_threads: int = 1) -> Any:
    """Create and allocate an interpreter for a .tflite file.

    Raises:
        RuntimeTooOld: the runtime lacks an op (or op version) the model uses.
        EdgeError: the file is not a model the runtime can load.
    """
    for need in kernel_needs(path):
        refusal = _kernel_refusal(relpath, need, runtime.name, runtime.version)
        if refusal:
            raise RuntimeTooOld(refusal)
    try:
        with _quiet_stderr():
            interpreter = runtime.interpreter_class(model_path=str(path), num_threads=num_threads)
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        text = str(exc)
        match = _MISSING_OP.search(text)
        if match:
            op, version = match.group(1), match.group(2)
            what = f"op {op} version {version}" if version else f"op {op}"
            raise RuntimeTooOld(
                f"{relpath} uses {what}, which {runtime.describe()} does not have; install a newer interpreter "
                "(pip install -U ai-edge-litert) or re-convert with an older TensorFlow"
            ) from None
        first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
        raise EdgeError(f"{runtime.describe()} cannot load {relpath}: {first}; re-create the bundle") from None
    return interpreter


# --------------------------------------------------------------------------- .tflite flatbuffer


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
_SUBGRAPH_TENSORS, _SUBGRAPH_OPERATORS = 0, 3
_TENSOR_TYPE = 1
_OPERATOR_OPCODE_INDEX, _OPERATOR_INPUTS, _OPERATOR_OUTPUTS = 0, 1, 2
_OPCODE_DEPRECATED, _OPCODE_CUSTOM, _OPCODE_VERSION, _OPCODE_BUILTIN = 0, 1, 2, 3
_METADATA_NAME, _METADATA_BUFFER = 0, 1
_BUFFER_DATA = 0
_CUSTOM = 32
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


def _model(path: Path) -> _Table:
    """The root ``Model`` table of a .tflite file.

    Raises:
        EdgeError: the file cannot be read or is not a TFLite flatbuffer.
    """
    try:
        buf = Path(path).read_bytes()
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


def tflite_ops(path: str | Path) -> list[dict[str, Any]]:
    """The operators a .tflite file uses, with their versions, read from the flatbuffer.

    Returns:
        sorted, de-duplicated ``[{"name": "FULLY_CONNECTED", "version": 9}, ...]``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(Path(path))
    try:
        seen = set(_op_codes(model))
    except (struct.error, IndexError):
        raise EdgeError(f"{path} is a truncated TFLite model; re-create it") from None
    return [{"name": name, "version": version} for name, version in sorted(seen)]


# The schema's TensorType enum, indexed by value.
TENSOR_TYPES: tuple[str, ...] = (
    "float32", "float16", "int32", "uint8", "int64", "string", "bool", "int16", "complex64", "int8",
    "float64", "complex128", "uint64", "resource", "variant", "uint32", "uint16", "int4", "bfloat16",
)


def tflite_kernels(path: str | Path) -> list[dict[str, Any]]:
    """The kernels a .tflite file needs: each operator with the types of its input and output tensors.

    An absent optional input (index -1) is ``None`` in ``inputs``.

    Returns:
        sorted, de-duplicated ``[{"name": "GELU", "version": 2, "inputs": ["int16"], "outputs": ["int16"]}, ...]``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(Path(path))

    def type_name(tensors: list[_Table], index: int) -> str | None:
        if index < 0:
            return None
        code = tensors[index].scalar(_TENSOR_TYPE, "b", 0)
        return TENSOR_TYPES[code] if 0 <= code < len(TENSOR_TYPES) else f"type_{code}"

    seen: set[tuple[str, int, tuple[str | None, ...], tuple[str | None, ...]]] = set()
    try:
        codes = _op_codes(model)
        for graph in model.tables(_MODEL_SUBGRAPHS):
            tensors = graph.tables(_SUBGRAPH_TENSORS)
            for op in graph.tables(_SUBGRAPH_OPERATORS):
                name, version = codes[op.scalar(_OPERATOR_OPCODE_INDEX, "I", 0)]
                inputs = tuple(type_name(tensors, i) for i in op.ints(_OPERATOR_INPUTS))
                outputs = tuple(type_name(tensors, i) for i in op.ints(_OPERATOR_OUTPUTS))
                seen.add((name, version, inputs, outputs))
    except (struct.error, IndexError):
        raise EdgeError(f"{path} is a truncated TFLite model; re-create it") from None
    return [{"name": n, "version": v, "inputs": list(i), "outputs": list(o)}
            for n, v, i, o in sorted(seen, key=lambda k: (k[0], k[1], [t or "" for t in k[2]], [t or "" for t in k[3]]))]


def tflite_metadata(path: str | Path) -> dict[str, bytes]:
    """The model's metadata entries (name -> raw buffer bytes), e.g. ``min_runtime_version``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(Path(path))
    try:
        buffers = model.tables(_MODEL_BUFFERS)
        out = {}
        for entry in model.tables(_MODEL_METADATA):
            name = entry.string(_METADATA_NAME) or ""
            index = entry.scalar(_METADATA_BUFFER, "I", 0)
            out[name] = buffers[index].bytes_vector(_BUFFER_DATA) if index < len(buffers) else b""
        return out
    except (struct.error, IndexError):
        raise EdgeError(f"{path} is a truncated TFLite model; re-create it") from None


def kernel_needs(path: str | Path) -> list[dict[str, Any]]:
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


def tflite_min_runtime(path: str | Path) -> str | None:
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
