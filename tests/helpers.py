"""Helpers shared by every test folder (importable as ``tests.helpers``; the conftest files hold only fixtures).

- :func:`run_cli`: ``deploykit ARGS`` or ``deploykit-edge ARGS`` run in this process (``main([...])``), its exit
  status and the text it wrote on stdout and stderr, Python's and the native libraries' alike;
- :func:`run_entry_point`: the same command as a real subprocess (``python -m convert``/``edge``), for the few
  tests that prove the installed entry points, their exit codes and their Ctrl+C policy;
- :func:`run`: any command in the repository, with :data:`ENV` (TensorFlow's logs silenced);
- model helpers: :func:`boston_features`, :func:`small_classifier` (Keras), :func:`litert_predict`,
  :func:`tflite_op_types` (LiteRT and the .tflite reader), each importing its heavy library when called.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
BOSTON_CSV = ROOT / "convert" / "data" / "boston.csv"
PYTHON = sys.executable

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}
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
    for the callers of :func:`run_entry_point` and not enforced. DEPLOYKIT_DEBUG is unset for the call.
    """
    if module == "convert":
        from convert.cli import main
    elif module == "edge":
        from edge.cli import main
    else:
        raise ValueError(f"unknown module {module!r}")
    argv = [str(a) for a in args]
    old_cwd, old_debug = os.getcwd(), os.environ.pop("DEPLOYKIT_DEBUG", None)
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
        if old_debug is not None:
            os.environ["DEPLOYKIT_DEBUG"] = old_debug


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
