"""Helpers shared by every test folder (importable as ``tests.helpers``; the conftest files hold only fixtures).

- :func:`run_cli`: ``deploykit ARGS`` or ``deploykit-edge ARGS`` run in this process (``main([...])``), its exit
  status and the text it wrote on stdout and stderr, Python's and the native libraries' alike;
- :func:`run_entry_point`: the same command as a real subprocess (``python -m convert``/``edge``), for the few
  tests that prove the installed entry points, their exit codes and their Ctrl+C policy;
- :func:`run`: any command in the repository, with :data:`ENV` (TensorFlow's logs silenced);
- the build cache: :func:`cache_root`, :func:`tree_sha256`, :func:`sources_sha256` and :func:`cached` (an entry made
  once per set of sources, under a lock, renamed into place; tests/conftest.py and tests/zoo/conftest.py use it);
- :class:`GroupDurations`: how long each xdist group took in this machine's last run, to start the longest first;
- :func:`build_page`: ``npm run build`` in web/ (once per run: the xdist controller builds before its workers start);
- model helpers: :func:`boston_features`, :func:`small_classifier` (Keras), :func:`litert_predict`,
  :func:`tflite_op_types` (LiteRT and the .tflite reader), each importing its heavy library when called.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; two runs building one entry then race as before (rename wins)
    fcntl = None  # type: ignore[assignment]

import numpy as np

from convert.quiet import ENV as CLI_ENV

ROOT = Path(__file__).resolve().parent.parent
BOSTON_CSV = ROOT / "convert" / "data" / "boston.csv"
PYTHON = sys.executable

# The CLI's own environment (convert.quiet.ENV: TensorFlow quiet, oneDNN off), set for the whole session by
# conftest.py, before anything imports TensorFlow. An in-process `deploykit` call would otherwise set it in the
# middle of a worker's life, and TensorFlow reads TF_ENABLE_ONEDNN_OPTS when it is first imported: a worker
# whose first import came before such a call trained with oneDNN and one whose first came inside it without,
# so `train(seed=7)` here and a cached `deploykit train --seed 7` from another worker differed by 4e-7.
QUIET_ENV = {**CLI_ENV,
             # the shadow worker at the server's priority: the suite keeps every core busy (pytest -n), and an
             # idle-class or nice-19 process waits for a free core for seconds to minutes (test_edge_shadow.py
             # checks the default, SCHED_IDLE, itself)
             "DEPLOYKIT_SHADOW_PRIORITY": "normal"}
# The one environment of every subprocess the tests start: TensorFlow quiet, output unbuffered, and no
# DEPLOYKIT_DEBUG (a developer's shell may set it; the tests assert the user's one-line errors).
ENV = {**{k: v for k, v in os.environ.items() if k != "DEPLOYKIT_DEBUG"}, **QUIET_ENV, "PYTHONUNBUFFERED": "1"}


def run(args: list[Any], **kw: Any) -> subprocess.CompletedProcess:
    """Run a command in the repository with :data:`ENV`; text output captured; ``timeout`` 600 s unless given."""
    kw.setdefault("cwd", ROOT)
    kw.setdefault("env", ENV)
    kw.setdefault("timeout", 600)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, **kw)


def run_entry_point(*args: Any, module: str = "convert", timeout: float = 600,
                    cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``deploykit ARGS`` (``module="edge"``: ``deploykit-edge ARGS``) in a subprocess: the installed program as a
    user starts it (``python -m convert`` when the entry point is not installed beside this Python)."""
    script = Path(PYTHON).parent / ("deploykit" if module == "convert" else "deploykit-edge")
    command = [str(script)] if script.is_file() else [PYTHON, "-m", module]
    return run([*command, *args], timeout=timeout, cwd=cwd or ROOT)


@contextlib.contextmanager
def _captured_fds() -> Iterator[tuple[Path, Path]]:
    """File descriptors 1 and 2, and ``sys.stdout``/``sys.stderr`` on them, sent to two files for the block
    (the converter's CLI writes its lines on duplicates of fds 1 and 2, TensorFlow's C++ code on fd 2)."""
    with tempfile.TemporaryDirectory(prefix="deploykit-cli-") as folder:
        paths = Path(folder) / "stdout", Path(folder) / "stderr"
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        old = sys.stdout, sys.stderr
        files = [open(p, "wb") for p in paths]
        try:
            os.dup2(files[0].fileno(), 1)
            os.dup2(files[1].fileno(), 2)
            sys.stdout = io.TextIOWrapper(open(1, "wb", closefd=False), encoding="utf-8", line_buffering=True)
            sys.stderr = io.TextIOWrapper(open(2, "wb", closefd=False), encoding="utf-8", line_buffering=True)
            yield paths
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            sys.stdout, sys.stderr = old
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for f in files:
                f.close()


def run_cli(*args: Any, module: str = "convert", cwd: Path | None = None, stdin: str | None = None,
            timeout: float | None = None) -> subprocess.CompletedProcess:
    """``deploykit ARGS`` (``module="edge"``: ``deploykit-edge ARGS``) run in this process through its
    ``main([...])``; returns a ``CompletedProcess`` with the exit status and the captured text.

    ``cwd`` is the working folder for the call; ``stdin`` the text on standard input; ``timeout`` is accepted
    for the callers of :func:`run_entry_point` and not enforced. DEPLOYKIT_DEBUG is unset for the call, and the
    environment is as before it once it returns.
    """
    if module == "convert":
        from convert.cli import main
    elif module == "edge":
        from edge.cli import main
    else:
        raise ValueError(f"unknown module {module!r}")
    argv = [str(a) for a in args]
    old_env, old_cwd = dict(os.environ), os.getcwd()
    os.environ.pop("DEPLOYKIT_DEBUG", None)
    old_stdin, old_hook = sys.stdin, sys.unraisablehook
    try:
        if cwd is not None:
            os.chdir(cwd)
        if stdin is not None:
            sys.stdin = io.TextIOWrapper(io.BytesIO(stdin.encode()), encoding="utf-8")
        with _captured_fds() as (out, err):
            try:
                status = main(argv)
            except SystemExit as exc:  # argparse: a usage error (2) or --help/--version (0)
                status = exc.code if isinstance(exc.code, int) else 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
            text = out.read_text(errors="replace"), err.read_text(errors="replace")
        return subprocess.CompletedProcess([module, *argv], status, *text)
    finally:
        os.chdir(old_cwd)
        sys.stdin, sys.unraisablehook = old_stdin, old_hook
        if dict(os.environ) != old_env:  # what the command set stays in the command, as in its own process
            os.environ.clear()
            os.environ.update(old_env)


WEB_BUILT = "DEPLOYKIT_TEST_WEB_BUILT"  # set by the xdist controller once it built web/dist for its workers


def build_page() -> subprocess.CompletedProcess:
    """``npm run build`` in web/ (web/dist from web/src and the pinned TFJS of web/node_modules)."""
    return subprocess.run(["npm", "run", "build"], cwd=ROOT / "web", text=True, capture_output=True, timeout=300)


def files_under(path: Path) -> list[Path]:
    """``path`` itself when it is a file, else every file below it (sorted; no ``__pycache__`` nor ``.pyc``)."""
    if path.is_file():
        return [path]
    found = []
    for folder, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [Path(folder) / n for n in sorted(names) if not n.endswith(".pyc")]
    return found


def tree_sha256(root: Path, paths: list[Path]) -> str:
    """One sha256 over the paths (relative to ``root``) and their contents."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def library_versions(names: Iterable[str]) -> list[str]:
    """``name==version`` of each installed distribution (``name missing`` when it is not installed)."""
    versions = []
    for lib in names:
        try:
            versions.append(f"{lib}=={metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} missing")
    return versions


def sources_sha256(sources: Iterable[str], libraries: Iterable[str], extra: Iterable[str] = ()) -> str:
    """The sha256 of the files under ``sources`` (paths relative to the repository), the versions of
    ``libraries`` and the ``extra`` lines (e.g. the runtimes' versions)."""
    paths = [f for name in sources for f in files_under(ROOT / name)]
    lines = [*library_versions(libraries), *extra]
    return hashlib.sha256((tree_sha256(ROOT, paths) + "\n".join(lines)).encode()).hexdigest()


def cache_root() -> Path:
    """``$DEPLOYKIT_TEST_CACHE``, else ``$XDG_CACHE_HOME/deploykit/test-bundles``, else ``~/.cache/...``."""
    if os.environ.get("DEPLOYKIT_TEST_CACHE"):
        return Path(os.environ["DEPLOYKIT_TEST_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deploykit" / "test-bundles"


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``path`` (created) for the block: a second process waits for the first."""
    with open(path, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def cached(entry: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``entry/name``, made by ``make(path)`` unless the cache holds it unchanged since it was made.

    Processes that ask for the same name take turns (a lock file ``.name.lock``): the first makes it, the
    others then find it made. ``make`` writes to a private path, renamed into place when it succeeded (a run
    killed mid-way leaves no half entry); a ``name.sha256`` file beside it records its files' digest, checked
    on every use, so an entry a test altered is made again.
    """
    final, stamp = entry / name, entry / f"{name}.sha256"

    def digest() -> str:
        return tree_sha256(final, files_under(final))

    with locked(entry / f".{name}.lock"):
        if final.exists() and stamp.is_file() and stamp.read_text() == digest():
            return final
        _remove(final)
        for stale in entry.glob(f".{name}.*.partial"):  # a killed run's leftovers (an hour is more than a build)
            if time.time() - stale.stat().st_mtime > 3600:
                _remove(stale)
        private = entry / f".{name}.{os.getpid()}.partial"
        _remove(private)
        make(private)
        try:
            private.rename(final)
        except OSError:  # another run (one without the lock) put it there first: use that one
            _remove(private)
            return final
        stamp.write_text(digest())
    return final


def one_error_line(result: subprocess.CompletedProcess) -> str:
    """The one line a failed command printed on stderr (exit status 1, no traceback); asserts it is one line."""
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def boston_features() -> np.ndarray:
    """The Boston CSV's rm, tax and age columns (the course model's features), float32."""
    data = np.genfromtxt(BOSTON_CSV, delimiter=",", names=True)
    return np.stack([data["rm"], data["tax"], data["age"]], axis=1).astype(np.float32)


def litert_predict(path: Path, rows: np.ndarray, transforms: Any) -> np.ndarray:
    """A .tflite file's serving_default outputs in LiteRT, one row at a time, after the input transforms."""
    from ai_edge_litert.interpreter import Interpreter

    from edge.transform import apply

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    feed = apply(transforms, {"features": rows})["features"]
    return np.concatenate([runner(features=feed[i : i + 1])["output_0"] for i in range(len(feed))])


def tflite_op_types(flatbuffer: bytes) -> list[tuple[str, list[str]]]:
    """The operators of a TFLite model's first subgraph with the types of their input tensors ("-" for none)."""
    from edge.tflite_file import operators

    return [(op.name, [(t or "-").upper() for t in op.inputs]) for op in operators(flatbuffer)]


def small_classifier(tmp_path: Path) -> tuple[Any, np.ndarray]:
    """A small Sequential softmax classifier on features of ranges 1 to 200, saved and reloaded."""
    import keras

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = np.c_[rng.normal(10, 3, 400), rng.uniform(0, 200, 400), rng.normal(0, 1, 400)].astype(np.float32)
    y = np.digitize(x[:, 0] + 0.05 * x[:, 1], [15, 20])
    model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(16),
                              keras.layers.BatchNormalization(), keras.layers.Activation("relu"),
                              keras.layers.Dense(3, activation="softmax")], name="clf")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, verbose=0)
    model.save(tmp_path / "clf.keras")
    return keras.models.load_model(tmp_path / "clf.keras"), x


class LazyModule:
    """A module imported on first use of one of its names: ``keras = LazyModule("keras")`` at a test module's top
    keeps TensorFlow out of collection (pytest reads every module-level name, so each worker of ``pytest -n`` would
    import it before its first test, whether or not its tests need it). Dunder names are not looked up, so
    collection's probes (``__test__``, ``__call__``) import nothing. Raises ImportError on first use if the module
    is missing."""

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(importlib.import_module(self._name), attr)


class GroupDurations:
    """The seconds each ``--dist loadgroup`` group took in the last ``pytest -n`` run on this machine
    (``test-durations.json`` in :func:`cache_root`), as a pytest plugin of the controller that times this run
    for the next one. Only the order the groups start in depends on it: a missing or unreadable file orders
    nothing, and a group it does not know counts as the median."""

    FILE = "test-durations.json"

    def __init__(self, path: Path, seconds: dict[str, float]) -> None:
        self.path, self.seconds = path, seconds
        self.run: defaultdict[str, float] = defaultdict(float)

    @classmethod
    def read(cls, folder: Path) -> "GroupDurations":
        """The durations kept in ``folder`` (none when the file is missing or is not a JSON object of numbers)."""
        path = folder / cls.FILE
        try:
            data = json.loads(path.read_text())
            seconds = {str(k): float(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError, TypeError):
            seconds = {}
        return cls(path, seconds)

    def longest_first(self, items: list[Any]) -> list[Any]:
        """``items`` with each group's tests together, in their order, the groups longest first (ties and
        all groups, with no durations, in collection order)."""
        if not self.seconds:
            return items
        median = sorted(self.seconds.values())[len(self.seconds) // 2]
        groups = [_group_of(item) for item in items]
        first: dict[str, int] = {}
        for index, group in enumerate(groups):
            first.setdefault(group, index)
        order = sorted(range(len(items)), key=lambda i: (-self.seconds.get(groups[i], median), first[groups[i]], i))
        return [items[i] for i in order]

    def pytest_runtest_logreport(self, report: Any) -> None:
        group = report.nodeid.rpartition("@")[2] if "@" in report.nodeid else report.nodeid.split("::")[0]
        self.run[group] += report.duration

    def pytest_sessionfinish(self, session: Any) -> None:
        if not self.run:
            return
        merged = {**self.seconds, **{k: round(v, 2) for k, v in self.run.items()}}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
            temp.write_text(json.dumps(merged, indent=0, sort_keys=True))
            os.replace(temp, self.path)
        except OSError:
            pass


def _group_of(item: Any) -> str:
    """An item's ``xdist_group`` name (its module's path when it has none)."""
    marker, module = item.get_closest_marker("xdist_group"), item.nodeid.split("::")[0]
    if marker is None:
        return module
    return str(marker.kwargs.get("name") or (marker.args[0] if marker.args else module))
