"""Helpers for the parity tests: run the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}
ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: object, timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m convert ARGS`` with captured output (DEPLOYKIT_DEBUG unset: no tracebacks)."""
    env = {**os.environ, **QUIET_ENV}
    env.pop("DEPLOYKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "convert", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd or ROOT)
