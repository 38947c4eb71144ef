"""Parity-suite fixtures: one set of runtimes (TFLite workers + one Chromium) for the whole package."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Iterator

import pytest

from convert.parity.runners import Runners


@pytest.fixture(scope="module")
def runners() -> Iterator[Runners]:
    """The litert and tflite-runtime workers and the browser, started once, shared by the tests of a module (module scope: two live Playwright sync instances cannot coexist)."""
    with Runners() as shared:
        yield shared


@pytest.fixture()
def bundle_copy(boston_mlp_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the Boston MLP bundle (verify writes into the bundle it checks)."""
    return Path(shutil.copytree(boston_mlp_bundle, tmp_path / "bundle"))
