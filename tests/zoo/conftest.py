"""Zoo fixtures: models built and converted through the CLI on first use; one set of runtimes per module (Playwright sync allows one live instance per thread)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from convert.parity.engine import ParityReport, Runners, verify_bundle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import zoo_models  # noqa: E402

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}


@pytest.fixture(scope="module")
def zoo_runners() -> Iterator[Runners]:
    with Runners() as shared:
        yield shared


def _convert(model: Path, data: Path, target: str, out: Path) -> None:
    import os

    args = [sys.executable, "-m", "convert", "convert", str(model), "--data", str(data), "--out", str(out)]
    if target:
        args += ["--target", target]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600, env={**os.environ, **QUIET})
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, zoo_runners: Runners, request) -> Any:
    """``zoo(name) -> (bundle, ParityReport)``: build, convert (CLI) and verify a zoo model once."""
    cache: dict[str, tuple[Path, ParityReport]] = {}
    root = tmp_path_factory.mktemp("zoo")

    def get(name: str) -> tuple[Path, ParityReport]:
        if name not in cache:
            if name in ("boston_linear", "boston_mlp"):
                model = request.getfixturevalue(name)
                src = request.getfixturevalue(f"{name}_bundle")
                bundle = Path(shutil.copytree(src, root / name))
            else:
                work = root / f"{name}-src"
                work.mkdir()
                model, data, target = zoo_models.BUILDERS[name](work)
                bundle = root / name
                _convert(model, data, target, bundle)
            cache[name] = (bundle, verify_bundle(bundle, model=model, runners=zoo_runners))
        return cache[name]

    return get
