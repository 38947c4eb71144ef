"""Ctrl+C in ``deploykit`` (convert.interrupt, convert.cli): always ``Error: interrupted`` and exit 130 while a
command works, also when a library swallowed the ``KeyboardInterrupt``; after the work is done, the command's status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import BOSTON_CSV, ENV, ROOT


def test_ctrl_c_that_python_ignored_in_a_finalizer_stops_at_the_next_step() -> None:
    """A Ctrl+C that lands in a finalizer (a TensorFlow ``__del__``, reported through ``sys.unraisablehook``) is
    noted and raised as ``KeyboardInterrupt`` at the next progress step, with nothing printed."""
    import io
    import types

    from convert import cli, interrupt, show

    cli._unraisable(types.SimpleNamespace(exc_type=KeyboardInterrupt))
    out = io.StringIO()
    with pytest.raises(KeyboardInterrupt):
        with show.steps(out) as step:
            step("Converting")
    assert not interrupt.pending() and out.getvalue() == ""


# A real SIGINT delivered inside tensorflowjs's graph freezing, which runs under `except BaseException`
# and falls back to the TF1 route: the Ctrl+C a user presses during "Converting the TFJS graph model".
CTRL_C_IN_TFJS_FREEZE = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal, also when started with SIGINT ignored
import tensorflowjs.converters.tf_saved_model_conversion_v2 as v2
real = v2._freeze_saved_model_v2
def interrupted(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(5)  # the Python-level handler raises KeyboardInterrupt in here, as for a Ctrl+C
    return real(*args, **kwargs)
v2._freeze_saved_model_v2 = interrupted
from convert.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_ctrl_c_during_the_tfjs_graph_conversion_is_an_interrupt(tmp_path: Path, boston_linear: Path) -> None:
    """A Ctrl+C during the TFJS graph conversion (where tensorflowjs catches ``BaseException`` and falls back)
    ends the command as an interrupt: ``Error: interrupted``, exit 130, no bundle and no temporary file left."""

    temp = tmp_path / "tmp"  # the work folder and the native log go here: all must be removed
    temp.mkdir()
    out = tmp_path / "bundle"
    # bytecode written as Python does by default: autograph's modules, imported from the temporary folder, leave
    # a __pycache__ there unless convert keeps them in its work folder
    env = {**{k: v for k, v in ENV.items() if k != "PYTHONDONTWRITEBYTECODE"}, "TMPDIR": str(temp)}
    result = subprocess.run([sys.executable, "-c", CTRL_C_IN_TFJS_FREEZE, "convert", str(boston_linear), "--data",
                             str(BOSTON_CSV), "--target", "medv", "--out", str(out)],
                            capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)
    assert result.returncode == 130, result.stderr
    assert result.stderr.splitlines()[-1] == "Error: interrupted"
    assert "Converting TFLite int16x8" in result.stderr  # it got as far as the graph model
    assert "tensorflowjs" not in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]  # no bundle, no staging folder
    assert list(temp.iterdir()) == []


def test_a_ctrl_c_a_library_swallowed_is_raised_at_the_next_check() -> None:
    """The mechanism the catch-alls rely on: the SIGINT is noted even when the KeyboardInterrupt it raised
    was caught by a library's `except BaseException`."""
    from convert import interrupt

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal starts it (CI may ignore SIGINT)
    try:
        _swallowed_ctrl_c_is_noted(interrupt)
    finally:
        signal.signal(signal.SIGINT, previous)


def _swallowed_ctrl_c_is_noted(interrupt) -> None:
    with interrupt.noting_sigint():
        assert signal.getsignal(signal.SIGINT) is interrupt._handler
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
        except BaseException:  # what tensorflowjs does
            pass
        assert interrupt.pending()
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
        assert not interrupt.pending()
        interrupt.check()  # noted once, raised once
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_ctrl_c_during_teardown_after_a_successful_convert_keeps_status_0(tmp_path: Path, boston_linear: Path) -> None:
    """A Ctrl+C during TensorFlow's teardown, after the bundle table, leaves the status of the finished command:
    0, no message, the bundle complete."""

    out = tmp_path / "bundle"
    env = ENV
    proc = subprocess.Popen([sys.executable, "-m", "convert", "convert", str(boston_linear), "--data", str(BOSTON_CSV),
                             "--target", "medv", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the bundle table ends with its bottom border; then only teardown is left
            if line.startswith("└"):
                break
        time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "interrupted" not in err and "Traceback" not in err
    assert (out / "manifest.json").is_file()
