"""Pick a TFLite interpreter, read a .tflite file's op codes without TensorFlow, check runtime needs.

Order: ``ai_edge_litert`` -> ``tflite_runtime`` -> ``tensorflow.lite`` (the last imported lazily, only
here, and only when neither light runtime is installed). ``DEPLOYKIT_EDGE_RUNTIME`` forces one of them
(tests use it to run the same bundle on both light runtimes).

The runtime check has two stages:

1. before loading, ``can_run`` compares the artifact's ``runtime.min_tflite_runtime`` (the converter
   writes the model's own ``min_runtime_version`` metadata, see ``tflite_min_runtime``) with the
   interpreter's TFLite version;
2. while loading, the interpreter itself is the authority on op versions: its "Didn't find op for
   builtin opcode" error is turned into ``RuntimeTooOld`` naming the op, the version and the runtime.

No per-runtime table of maximum op versions is kept: it cannot be derived reliably from the installed
wheels, and stage 2 reports exactly the op the runtime lacks.
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
        "no TFLite interpreter is installed; pip install ai-edge-litert (Python 3.12+) or tflite-runtime (3.11)"
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


def can_run(artifact: Mapping[str, Any], runtime_name: str, runtime_version: str) -> tuple[bool, str]:
    """Whether a runtime can run an artifact, judged from the manifest alone; ``(ok, reason)``.

    Missing or unreadable fields are treated leniently (``ok`` with a reason saying what was not
    checked); the interpreter's own load remains the final op-version check.
    """
    needs = artifact.get("runtime") or {}
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
            f"{artifact.get('path', 'the artifact')} needs TFLite runtime >= {minimum}, "
            f"the installed interpreter is {label}; install a newer one "
            "(pip install -U ai-edge-litert, or tflite-runtime on Python 3.11) or re-convert with an older TensorFlow"
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
_MODEL_OPERATOR_CODES, _MODEL_BUFFERS, _MODEL_METADATA = 1, 4, 6
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


def tflite_ops(path: str | Path) -> list[dict[str, Any]]:
    """The operators a .tflite file uses, with their versions, read from the flatbuffer.

    The code is ``max(builtin_code, deprecated_builtin_code)`` as the schema prescribes (old files
    only set the byte-wide deprecated field; new ones set 127 there and the real code in the int32).

    Returns:
        sorted, de-duplicated ``[{"name": "FULLY_CONNECTED", "version": 9}, ...]``.

    Raises:
        EdgeError: the file is not a readable TFLite model.
    """
    model = _model(Path(path))
    seen: set[tuple[str, int]] = set()
    try:
        for code in model.tables(_MODEL_OPERATOR_CODES):
            deprecated = code.scalar(_OPCODE_DEPRECATED, "b", 0)
            builtin = code.scalar(_OPCODE_BUILTIN, "i", 0)
            number = max(builtin, deprecated)
            version = code.scalar(_OPCODE_VERSION, "i", 1)
            custom = code.string(_OPCODE_CUSTOM) if number == _CUSTOM else None
            seen.add((op_name(number, custom), int(version)))
    except (struct.error, IndexError):
        raise EdgeError(f"{path} is a truncated TFLite model; re-create it") from None
    return [{"name": name, "version": version} for name, version in sorted(seen)]


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


def tflite_min_runtime(path: str | Path) -> str | None:
    """The ``min_runtime_version`` the TFLite converter stored in the model (``"1.14.0"``), or None."""
    raw = tflite_metadata(path).get("min_runtime_version")
    if not raw:
        return None
    text = raw.split(b"\0", 1)[0].decode("ascii", errors="replace").strip()
    return text or None
