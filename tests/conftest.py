"""Shared fixtures: the Boston reference models and their bundles, built through the real CLI once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BOSTON_CSV = ROOT / "convert" / "data" / "boston.csv"
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}
os.environ.update(QUIET_ENV)


def run_cli(*args: str, module: str = "convert", timeout: float = 600, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run ``python -m convert ARGS`` (or ``edge``) and capture its output."""
    env = {**os.environ, **QUIET_ENV}
    env.pop("DEPLOYKIT_DEBUG", None)
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=cwd)


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("models")


def _train(kind: str, models_dir: Path) -> Path:
    out = models_dir / f"{kind}.keras"
    result = run_cli("train", "--model", kind, "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def boston_mlp(models_dir) -> Path:
    """The Boston MLP (Normalization + MLP), trained by ``deploykit train --model mlp``."""
    return _train("mlp", models_dir)


@pytest.fixture(scope="session")
def boston_linear(models_dir) -> Path:
    """The course's linear Boston model, trained by ``deploykit train --model linear``."""
    return _train("linear", models_dir)


def _bundle(model: Path, out: Path) -> Path:
    result = run_cli("convert", model, "--data", BOSTON_CSV, "--target", "medv", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def boston_mlp_bundle(boston_mlp, tmp_path_factory) -> Path:
    """The bundle ``deploykit convert`` writes for the Boston MLP."""
    return _bundle(boston_mlp, tmp_path_factory.mktemp("bundles") / "mlp")


@pytest.fixture(scope="session")
def boston_linear_bundle(boston_linear, tmp_path_factory) -> Path:
    """The bundle ``deploykit convert`` writes for the linear Boston model."""
    return _bundle(boston_linear, tmp_path_factory.mktemp("bundles") / "linear")


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory) -> dict:
    """The image classifier of tests/image_model.py, built in a subprocess and converted by the CLI with
    ``--labels``: {"bundle", "dir" (model, labels, PNGs), "pngs": [Path per class]}."""
    work = tmp_path_factory.mktemp("image-model")
    env = {**os.environ, **QUIET_ENV}
    made = subprocess.run([sys.executable, str(ROOT / "tests" / "image_model.py"), str(work)], capture_output=True,
                          text=True, timeout=900, env=env)
    assert made.returncode == 0, made.stderr[-3000:]
    bundle = work / "bundle"
    result = run_cli("convert", work / "colours.keras", "--data", work / "colours.npz", "--target", "label",
                     "--labels", work / "labels.txt", "--out", bundle, timeout=900)
    assert result.returncode == 0, result.stderr
    return {"bundle": bundle, "dir": work, "pngs": sorted(work.glob("class*.png"))}
