"""Shared fixtures: the Boston reference models and their bundles, made by the real CLI, once per set of sources;
the zoo's cache folder; the hooks that let ``pytest -n`` (pytest-xdist, ``make test``) run the suite on every core.

``deploykit train`` and ``deploykit convert`` run in this process (``tests.helpers.run_cli``). What they write is
kept in a cache folder (``$DEPLOYKIT_TEST_CACHE``, else ``$XDG_CACHE_HOME/deploykit/test-bundles``, else
``~/.cache/deploykit/test-bundles``) under the sha256 of everything that makes it: convert/ (the training code
and the Boston data are there), edge/, web/dist, pyproject.toml, this file (the commands), and the versions of
the libraries that convert. A later run with the same sources takes the models and bundles from there, so the
TF-free tests (tests/edge) run without importing TensorFlow. An entry whose files changed since it was written
(a test that altered the shared bundle) is made again; processes asking for one entry take turns
(``tests.helpers.cached``). ``DEPLOYKIT_TEST_BUNDLE`` names a bundle to use instead of the Boston MLP bundle.
``zoo_cache`` is the same for the zoo (tests/zoo/conftest.py), keyed also by tests/zoo's builders and the
runtimes' versions.

Under ``pytest -n`` the controller builds web/dist and the parity runtimes' environments once before the workers
start, and every test without an ``xdist_group`` is grouped with its module (``--dist loadgroup``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from tests.helpers import (BOSTON_CSV, QUIET_ENV, ROOT, WEB_BUILT, GroupDurations, build_page, cache_root, cached, run,
                           run_cli, sources_sha256)

os.environ.update(QUIET_ENV)
# what TensorFlow computed depends on its environment too (oneDNN on or off): part of every cache key
TF_ENVIRONMENT = tuple(f"{k}={QUIET_ENV[k]}" for k in sorted(QUIET_ENV))

SOURCES = ("convert", "edge", "web/dist", "tests/conftest.py", "pyproject.toml")  # conftest: the commands
LIBRARIES = ("tensorflow", "keras", "tensorflowjs", "tf-keras", "ai-edge-litert", "numpy")
KEEP_DAYS = 14  # cache entries unused for longer are removed
# What makes a zoo model's outcome (the key of ``zoo_cache``): the sources above, the TFJS the browser harness
# loads, the helpers, tests/zoo's builders and conftest (test_zoo*.py, zoo_expected.py and zoo_table.py only read
# the outcome), and the versions of the libraries and of the runtimes verify drives.
ZOO_READERS = ("test_zoo.py", "test_zoo_page.py", "zoo_expected.py", "zoo_table.py")
ZOO_SOURCES = (*SOURCES, "web/package-lock.json", "tests/helpers.py",
               *(f"tests/zoo/{p.name}" for p in sorted((ROOT / "tests" / "zoo").glob("*.py")) if p.name not in ZOO_READERS))
ZOO_LIBRARIES = (*LIBRARIES, "tensorflow-decision-forests", "ydf", "scikit-learn", "playwright")


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession") and not hasattr(config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Under ``pytest -n``, before the workers start: build web/dist once, unless the caller just did (``make
    test`` sets DEPLOYKIT_TEST_WEB_BUILT=1 after its ``web`` step; a worker rebuilding it would race another's
    convert, which copies it into a bundle), and make the parity runtimes' environments (two workers creating
    one would race)."""
    if not _is_xdist_controller(session.config):
        return
    web = ROOT / "web"
    if os.environ.get(WEB_BUILT) != "1" and (web / "build.mjs").is_file() and (web / "node_modules").is_dir():
        built = build_page()
        if built.returncode != 0:
            raise pytest.UsageError(f"npm run build in web/ failed:\n{built.stdout}{built.stderr}")
        os.environ[WEB_BUILT] = "1"
    from convert.errors import DeployKitError
    from convert.parity import envs

    for name in envs.SPECS:
        try:
            envs.ensure(name)
        except DeployKitError:  # the tests that need it report the message
            pass


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each test without an ``xdist_group`` goes in its module's group, so ``--dist loadgroup`` keeps a module
    (and its module-scoped servers and browsers) on one worker; tests/zoo groups its models itself. The groups
    that took longest in this machine's last run go first (``GroupDurations``), so no long one starts last."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::")[0]))
    items[:] = GroupDurations.read(cache_root()).longest_first(items)


@pytest.hookimpl(trylast=True)  # after xdist's own, which registers the controller's session ("dsession")
def pytest_configure(config: pytest.Config) -> None:
    """The controller of ``pytest -n`` keeps the collection's order (the longest groups first) instead of
    xdist's own (the groups with most tests first), and times each group for the next run."""
    if _is_xdist_controller(config):
        config.option.loadscopereorder = False
        config.pluginmanager.register(GroupDurations.read(cache_root()), "deploykit-group-durations")


@pytest.fixture(scope="session")
def build_cache() -> Path:
    """This set of sources' folder in the cache (created); entries unused for KEEP_DAYS days are removed."""
    root = cache_root()
    entry = root / sources_sha256(SOURCES, LIBRARIES, TF_ENVIRONMENT)[:16]
    entry.mkdir(parents=True, exist_ok=True)
    os.utime(entry)
    for old in root.iterdir():
        if old != entry and old.is_dir() and time.time() - old.stat().st_mtime > KEEP_DAYS * 86400:
            shutil.rmtree(old, ignore_errors=True)
    return entry


def runtime_versions() -> list[str]:
    """The versions of the runtimes ``verify`` drives (their environments are created if missing)."""
    from convert.parity import envs
    from convert.parity.browser import find_chromium

    lines = [f"{name}: {json.dumps(envs.ensure(name).versions, sort_keys=True)}" for name in envs.SPECS]
    exe = find_chromium()
    if exe:
        found = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
        lines.append(f"chromium: {found.stdout.strip()}")
    else:
        lines.append("chromium: playwright's own")
    return lines


@pytest.fixture(scope="session")
def zoo_cache() -> Path:
    """The zoo's folder in the cache for this set of sources and runtimes (created): ``zoo-<sha>`` beside the
    Boston entries, or ``$DEPLOYKIT_ZOO_CACHE/<sha>``."""
    key = sources_sha256(ZOO_SOURCES, ZOO_LIBRARIES, (*runtime_versions(), *TF_ENVIRONMENT))[:16]
    override = os.environ.get("DEPLOYKIT_ZOO_CACHE")
    entry = Path(override) / key if override else cache_root() / f"zoo-{key}"
    entry.mkdir(parents=True, exist_ok=True)
    os.utime(entry)
    return entry


@pytest.fixture(scope="session")
def from_zoo_cache(zoo_cache: Path) -> Callable[[str, Callable[[Path], None]], Path]:
    """``from_zoo_cache(name, make)``: ``name`` in the zoo's cache folder, made by ``make(path)`` if missing (a
    name should carry the digest of any code outside ZOO_SOURCES that makes it)."""
    return lambda name, make: cached(zoo_cache, name, make)


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
def image_bundle(from_cache) -> dict:
    """The image classifier of tests/image_model.py, built in a subprocess and converted by the CLI with
    ``--labels``: {"bundle", "dir" (model, labels, PNGs), "pngs": [Path per class]}; cached as the Boston
    bundles, under a name that carries tests/image_model.py's digest."""
    script = ROOT / "tests" / "image_model.py"

    def make(work: Path) -> None:
        work.mkdir()
        made = run([sys.executable, str(script), str(work)], timeout=900)
        assert made.returncode == 0, made.stderr[-3000:]
        result = run_cli("convert", work / "colours.keras", "--data", work / "colours.npz", "--target", "label",
                         "--labels", work / "labels.txt", "--out", work / "bundle", timeout=900)
        assert result.returncode == 0, result.stderr

    work = from_cache(f"image-model-{hashlib.sha256(script.read_bytes()).hexdigest()[:12]}", make)
    return {"bundle": work / "bundle", "dir": work, "pngs": sorted(work.glob("class*.png"))}
