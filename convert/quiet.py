"""Keep TensorFlow's C++ and Python log noise off the terminal (called by the CLI, never on import)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Iterator, TextIO

ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_CPP_MAX_VLOG_LEVEL": "-1",
    "GRPC_VERBOSITY": "ERROR",
    "GLOG_minloglevel": "3",
    "ABSL_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "CUDA_VISIBLE_DEVICES": "-1",
    "TFDF_DISABLE_WELCOME_MESSAGE": "1",
}


def silence_environment() -> None:
    """Set the environment variables that quiet TensorFlow, before it is imported."""
    for key, value in ENV.items():
        os.environ.setdefault(key, value)
    warnings.filterwarnings("ignore")
    for name in ("tensorflow", "absl", "keras", "h5py", "jax"):
        logging.getLogger(name).setLevel(logging.ERROR)


NATIVE_LOG_PREFIX = "deploykit-native-"


@contextlib.contextmanager
def native_output_to_log() -> Iterator[tuple[TextIO, TextIO, Path]]:
    """Send file descriptors 1 and 2 (where C++ libraries write) to a log file for the block.

    Yields (stdout, stderr, log path): Python-level text streams that still reach the terminal.
    ``sys.stdout`` and ``sys.stderr`` point at them during the block.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    # mkstemp: an unpredictable name, created exclusively (O_EXCL, O_NOFOLLOW), 0600; never a file planted
    # in the shared temporary folder. The pid in the name lets the next convert remove a killed run's log.
    log_fd, name = tempfile.mkstemp(prefix=f"{NATIVE_LOG_PREFIX}{os.getpid()}-", suffix=".log")
    log = Path(name)
    saved_out, saved_err = os.dup(1), os.dup(2)
    out = io.TextIOWrapper(os.fdopen(saved_out, "wb", buffering=0), encoding="utf-8", line_buffering=True, write_through=True)
    err = io.TextIOWrapper(os.fdopen(saved_err, "wb", buffering=0), encoding="utf-8", line_buffering=True, write_through=True)
    old_stdout, old_stderr = sys.stdout, sys.stderr
    try:
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        sys.stdout, sys.stderr = out, err
        yield out, err, log
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(out.fileno(), 1)
        os.dup2(err.fileno(), 2)
        sys.stdout, sys.stderr = old_stdout, old_stderr
        os.close(log_fd)


@contextlib.contextmanager
def python_prints_swallowed() -> Iterator[None]:
    """Swallow Python-level prints (tensorflow_decision_forests greets on import)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield
