"""Pick a TFLite interpreter and check an artifact's runtime needs (the file is read by ``edge.tflite_file``).

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
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

from edge.errors import EdgeError, RuntimeTooOld
from edge.tflite_file import kernel_needs, parse_version

# The light runtimes, spelled once: deploykit's name for each (``deploykit verify --runtimes``, the parity record)
# -> (the module the runner imports, which ``DEPLOYKIT_EDGE_RUNTIME`` also accepts; its pip distribution).
LIGHT_RUNTIMES: dict[str, tuple[str, str]] = {
    "litert": ("ai_edge_litert", "ai-edge-litert"),
    "tflite-runtime": ("tflite_runtime", "tflite-runtime"),
}
LITERT, TFLITE_RUNTIME = (module for module, _ in LIGHT_RUNTIMES.values())
RUNTIME_ORDER = (LITERT, TFLITE_RUNTIME, "tensorflow")
_DISTRIBUTIONS = dict(LIGHT_RUNTIMES.values())
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
    if name in _DISTRIBUTIONS:
        module = importlib.import_module(f"{name}.interpreter")
        version = _dist_version(_DISTRIBUTIONS[name], importlib.import_module(name))
        return Runtime(name, version, LITERT_TFLITE_FLOOR if name == LITERT else version, module.Interpreter)
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
    wanted = LIGHT_RUNTIMES[wanted][0] if wanted in LIGHT_RUNTIMES else wanted  # deploykit's name works too
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


def _describe_need(need: Mapping[str, Any]) -> str:
    if need.get("input_type"):
        return f"{need.get('op')} on {need['input_type']} tensors"
    return f"{need.get('op')} version {need.get('version')}"


def _kernel_refusal(relpath: str, need: Mapping[str, Any], runtime_name: str, runtime_version: str) -> str | None:
    """Why the runtime cannot run one ``kernel_needs`` entry: one line naming the op, the type and the
    minimum version; None when it can (or when the versions cannot be compared)."""
    from edge._kernels import LAST_CHECKED

    litert = runtime_name == LITERT
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
    if runtime_name == LITERT:
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
