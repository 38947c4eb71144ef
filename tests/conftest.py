"""Shared fixtures: the Boston reference models and their bundles, made by the real CLI, once per set of sources.

``deploykit train`` and ``deploykit convert`` run in this process (``tests.helpers.run_cli``). What they write is
kept in a cache folder (``$DEPLOYKIT_TEST_CACHE``, else ``$XDG_CACHE_HOME/deploykit/test-bundles``, else
``~/.cache/deploykit/test-bundles``) under the sha256 of everything that makes it: convert/ (the training code
and the Boston data are there), edge/, web/dist, pyproject.toml, this file (the commands), and the versions of
the libraries that convert. A later run with the same sources takes the models and bundles from there, so the
TF-free tests (tests/edge) run without importing TensorFlow. An entry whose files changed since it was written
(a test that altered the shared bundle) is made again. ``DEPLOYKIT_TEST_BUNDLE`` names a bundle to use instead
of the Boston MLP bundle.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import BOSTON_CSV, QUIET_ENV, ROOT, run, run_cli

os.environ.update(QUIET_ENV)

SOURCES = ("convert", "edge", "web/dist", "tests/conftest.py", "pyproject.toml")  # conftest: the commands
LIBRARIES = ("tensorflow", "keras", "tensorflowjs", "tf-keras", "ai-edge-litert", "numpy")
KEEP_DAYS = 14  # cache entries unused for longer are removed


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    found = []
    for folder, dirs, names in os.walk(path, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        found += [Path(folder) / n for n in sorted(names) if not n.endswith(".pyc")]
    return found


def _tree_sha256(root: Path, paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def sources_sha256() -> str:
    """The sha256 of the sources and library versions that make the cached models and bundles."""
    paths = [f for name in SOURCES for f in _files(ROOT / name)]
    versions = []
    for lib in LIBRARIES:
        try:
            versions.append(f"{lib}=={metadata.version(lib)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{lib} missing")
    return hashlib.sha256((_tree_sha256(ROOT, paths) + "\n".join(versions)).encode()).hexdigest()


def cache_root() -> Path:
    if os.environ.get("DEPLOYKIT_TEST_CACHE"):
        return Path(os.environ["DEPLOYKIT_TEST_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "deploykit" / "test-bundles"


@pytest.fixture(scope="session")
def build_cache() -> Path:
    """This set of sources' folder in the cache (created); entries unused for KEEP_DAYS days are removed."""
    root = cache_root()
    entry = root / sources_sha256()[:16]
    entry.mkdir(parents=True, exist_ok=True)
    os.utime(entry)
    for old in root.iterdir():
        if old != entry and old.is_dir() and time.time() - old.stat().st_mtime > KEEP_DAYS * 86400:
            shutil.rmtree(old, ignore_errors=True)
    return entry


def cached(entry: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``entry/name``, made by ``make(path)`` unless the cache holds it unchanged since it was made.

    ``make`` writes to a private path, renamed into place when it succeeded (runs in parallel are safe); a
    ``name.sha256`` file beside it records its files' digest, checked on every use.
    """
    final, stamp = entry / name, entry / f"{name}.sha256"

    def digest() -> str:
        return _tree_sha256(final, _files(final))

    for _ in range(20):  # another run renamed its build into place and is writing the stamp
        if not final.exists() or stamp.is_file():
            break
        time.sleep(0.5)
    if final.exists() and stamp.is_file() and stamp.read_text() == digest():
        return final
    shutil.rmtree(final, ignore_errors=True) if final.is_dir() else final.unlink(missing_ok=True)
    for stale in entry.glob(f".{name}.*.partial"):  # a killed run's leftovers (an hour is more than a build)
        if time.time() - stale.stat().st_mtime > 3600:
            shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    private = entry / f".{name}.{os.getpid()}.partial"
    shutil.rmtree(private, ignore_errors=True)
    make(private)
    try:
        private.rename(final)
    except OSError:  # another run put it there first: use that one (it writes the stamp)
        shutil.rmtree(private, ignore_errors=True) if private.is_dir() else private.unlink(missing_ok=True)
        return final
    stamp.write_text(digest())
    return final


def train_cli(kind: str, out: Path, *extra: str) -> None:
    """``deploykit train --model KIND --out OUT EXTRA``; asserts success."""
    out.parent.mkdir(parents=True, exist_ok=True)
    keras_file = out.with_suffix(".keras") if out.suffix != ".keras" else out
    result = run_cli("train", "--model", kind, "--out", keras_file, *extra)
    assert result.returncode == 0, result.stderr
    if keras_file != out:
        keras_file.rename(out)


def convert_cli(model: Path, out: Path, *extra: str) -> str:
    """``deploykit convert MODEL --data boston.csv --target medv --out OUT``; asserts success, returns stdout."""
    result = run_cli("convert", model, "--data", BOSTON_CSV, "--target", "medv", "--out", out, *extra)
    assert result.returncode == 0, result.stderr
    return result.stdout


def _model(build_cache: Path, kind: str, seed: int = 42) -> Path:
    name = f"{kind}.keras" if seed == 42 else f"{kind}-seed{seed}.keras"
    extra = () if seed == 42 else ("--seed", str(seed))
    return cached(build_cache, name, lambda path: train_cli(kind, path, *extra))


def _bundle(build_cache: Path, model: Path) -> Path:
    name = f"bundle-{model.stem}"

    def make(path: Path) -> None:
        (build_cache / f"{name}.stdout").write_text(convert_cli(model, path))

    return cached(build_cache, name, make)


@pytest.fixture(scope="session")
def from_cache(build_cache) -> Callable[[str, Callable[[Path], None]], Path]:
    """``from_cache(name, make)``: this set of sources' ``name`` in the cache, made by ``make(path)`` if missing."""
    return lambda name, make: cached(build_cache, name, make)


@pytest.fixture(scope="session")
def boston_build(build_cache) -> Callable[..., tuple[Path, Path]]:
    """``boston_build(kind, seed=42)``: (model, bundle) of ``deploykit train --model KIND --seed SEED`` and
    ``deploykit convert`` with the Boston data, from the cache when it holds them."""
    def build(kind: str, seed: int = 42) -> tuple[Path, Path]:
        model = _model(build_cache, kind, seed)
        return model, _bundle(build_cache, model)

    return build


@pytest.fixture(scope="session")
def boston_mlp(build_cache) -> Path:
    """The Boston MLP (Normalization + MLP), trained by ``deploykit train --model mlp``."""
    return _model(build_cache, "mlp")


@pytest.fixture(scope="session")
def boston_linear(build_cache) -> Path:
    """The course's linear Boston model, trained by ``deploykit train --model linear``."""
    return _model(build_cache, "linear")


@pytest.fixture(scope="session")
def boston_mlp_bundle(build_cache, boston_mlp) -> Path:
    """The bundle ``deploykit convert`` writes for the Boston MLP."""
    return _bundle(build_cache, boston_mlp)


@pytest.fixture(scope="session")
def boston_linear_bundle(build_cache, boston_linear) -> Path:
    """The bundle ``deploykit convert`` writes for the linear Boston model."""
    return _bundle(build_cache, boston_linear)


@pytest.fixture(scope="session")
def image_bundle(tmp_path_factory) -> dict:
    """The image classifier of tests/image_model.py, built in a subprocess and converted by the CLI with
    ``--labels``: {"bundle", "dir" (model, labels, PNGs), "pngs": [Path per class]}."""
    work = tmp_path_factory.mktemp("image-model")
    made = run([sys.executable, str(ROOT / "tests" / "image_model.py"), str(work)], timeout=900)
    assert made.returncode == 0, made.stderr[-3000:]
    bundle = work / "bundle"
    result = run_cli("convert", work / "colours.keras", "--data", work / "colours.npz", "--target", "label",
                     "--labels", work / "labels.txt", "--out", bundle, timeout=900)
    assert result.returncode == 0, result.stderr
    return {"bundle": bundle, "dir": work, "pngs": sorted(work.glob("class*.png"))}
