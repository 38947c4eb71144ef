"""Zoo fixtures: each model is built, converted (through the CLI) and verified once, on first use, and kept in
the build cache; one set of runtimes per module (Playwright sync allows one live instance per thread).

The cache is tests/conftest.py's ``zoo_cache`` (``zoo-<sha>`` beside the Boston entries, or under
``$DEPLOYKIT_ZOO_CACHE``), keyed by the sha256 of everything that makes a model's outcome (the sources, this
folder's builders and this file, the libraries' and the runtimes' versions). Per model it holds what the build and convert wrote (``src/``,
``bundle/`` after ``verify``, with its parity.json) and ``zoo.json`` (convert's error line, the seconds); an
entry is made under a lock and renamed into place (tests.helpers.cached), so two processes never build one
model twice nor see half of it. A hit copies the entry into this session's folder and reads the report back
from parity.json: every case of zoo_expected.py is asserted on it as on a fresh build.

Every model's outcome is also written to ``test-artifacts/zoo_report.json`` as soon as it is known (model x
artifact x runtime: passed, error, metrics, status; build / convert / verify seconds; ``cached`` when it came
from the cache), so a run shows what happened without a script; ``python tests/zoo/zoo_table.py`` prints it as
the README's table. The workers of one ``pytest -n`` run merge their models into the one file.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from convert.parity.engine import ParityReport, Result, Runners, verify_bundle
from tests.helpers import cached, locked

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import zoo_models  # noqa: E402

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}
REPORT = Path(os.environ.get("ZOO_REPORT") or HERE.parents[1] / "test-artifacts" / "zoo_report.json")
# One id per test run, shared by the xdist workers (they merge their models into one report).
RUN = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


@dataclass
class ZooModel:
    """One zoo model after convert and verify: the bundle, or the one line convert failed with."""

    name: str
    bundle: Path | None
    convert_error: str
    manifest: dict[str, Any]
    report: ParityReport | None
    seconds: dict[str, float] = field(default_factory=dict)
    entry: dict[str, Any] = field(default_factory=dict)  # what zoo_report.json holds for it (zoo_expected.check reads it)
    model: Path | None = None  # the source model convert read
    cached: bool = False  # taken from the build cache (seconds are then those of the build that made it)


@pytest.fixture(scope="module")
def zoo_runners() -> Iterator[Runners]:
    with Runners() as shared:
        yield shared


def _convert(model: Path, data: Path, target: str, out: Path) -> str:
    """Run ``deploykit convert``; return "" or its one-line ``Error: ...`` message (without ``Error: ``)."""
    args = [sys.executable, "-m", "convert", "convert", str(model), "--data", str(data), "--out", str(out)]
    if target:
        args += ["--target", target]
    result = subprocess.run(args, capture_output=True, text=True, timeout=1800, env={**os.environ, **QUIET})
    if result.returncode == 0:
        return ""
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert result.returncode == 1 and len(lines) == 1, f"convert did not fail with one Error line:\n{result.stderr[-2000:]}"
    return lines[0][len("Error: "):]


class ZooReport:
    """``test-artifacts/zoo_report.json``: one entry per model verified in this session, rewritten after each."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.models: dict[str, dict[str, Any]] = {}
        self.cases: dict[str, str] = {}

    def add(self, entry: ZooModel) -> None:
        entry.entry = self.models[entry.name] = _entry(entry)
        self.write()

    def outcome(self, case: str, outcome: str) -> None:
        self.cases[case] = outcome
        self.write()

    def write(self) -> None:
        """Rewrite the file with this process's models and cases, merged with those another worker of the
        same run wrote (a file from an earlier run is replaced)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with locked(self.path.with_name(self.path.name + ".lock")):
            try:
                old = json.loads(self.path.read_text())
            except (OSError, ValueError):
                old = {}
            if old.get("run") != RUN:
                old = {}
            data = {"schema_version": 1, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "run": RUN,
                    "models": {**old.get("models", {}), **self.models}, "cases": {**old.get("cases", {}), **self.cases}}
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(data, indent=1, allow_nan=True))
            tmp.replace(self.path)


def _entry(entry: ZooModel) -> dict[str, Any]:
    manifest = entry.manifest
    keep = ("path", "format", "variant", "bytes", "status", "rejection", "measured", "float_ops", "integer_only", "note", "tolerance", "runtime")
    results = []
    for r in entry.report.results if entry.report else []:
        results.append({"artifact": r.artifact, "runtime": r.runtime, "passed": r.passed, "error": r.error,
                        "failures": r.failures, "interpreter": r.interpreter, "version": r.runtime_version,
                        "metrics": r.golden, **{k: getattr(r, k) for k in ("status", "note") if hasattr(r, k)}})
    return {"model": entry.name, "set": zoo_models.SET[entry.name], "family": zoo_models.FAMILY[entry.name],
            "seconds": {k: round(v, 1) for k, v in entry.seconds.items()}, "cached": entry.cached,
            "convert_error": entry.convert_error,
            "artifacts": [{k: a[k] for k in keep if k in a} for a in manifest.get("artifacts", [])],
            "skipped": manifest.get("skipped", []), "results": results,
            "passed": bool(entry.report and entry.report.passed)}


@pytest.fixture(scope="session")
def zoo_report() -> ZooReport:
    return ZooReport(REPORT)


@pytest.fixture(scope="session")
def zoo_built() -> dict[str, ZooModel]:
    """The zoo models built in this session, by name: every module's ``zoo`` reads and fills it, so a model is
    converted and verified once per session (test_zoo_page.py opens the bundles test_zoo.py made)."""
    return {}


def _relative(path: Path, root: Path) -> str:
    return str(Path(path).resolve().relative_to(root.resolve()))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, zoo_runners: Runners, zoo_report: ZooReport, zoo_built: dict[str, ZooModel],
        zoo_cache: Path, request) -> Callable[[str], ZooModel]:
    """``zoo(name) -> ZooModel``: build, convert (CLI) and verify a zoo model once per set of sources (the
    cache), or take it from the cache; once per session either way."""
    cache = zoo_built
    root = tmp_path_factory.mktemp("zoo")

    def build(name: str, into: Path) -> None:
        """Build, convert and verify ``name`` in this session's folder, then copy what it made to ``into``."""
        seconds: dict[str, float] = {}
        start = time.perf_counter()
        error = ""
        work = root / f"{name}-src"
        work.mkdir()
        bundle = root / name
        if name in zoo_models.BOSTON:
            model = Path(shutil.copy2(request.getfixturevalue(name), work))
            shutil.copytree(request.getfixturevalue(f"{name}_bundle"), bundle)
        else:
            if name in zoo_models.FROM_FIXTURE:
                builder, fixture = zoo_models.FROM_FIXTURE[name]
                model, data, target = builder(work, request.getfixturevalue(fixture))
            else:
                model, data, target = zoo_models.BUILDERS[name](work)
            seconds["build"] = time.perf_counter() - start
            error = _convert(model, data, target, bundle)
            seconds["convert"] = time.perf_counter() - start - seconds["build"]
        if not error:
            begin = time.perf_counter()
            verify_bundle(bundle, model=model, runners=zoo_runners)  # writes parity.json into the bundle
            seconds["verify"] = time.perf_counter() - begin
        into.mkdir()
        shutil.copytree(work, into / "src", symlinks=True)
        if not error:
            shutil.copytree(bundle, into / "bundle", symlinks=True)
        facts = {"convert_error": error, "seconds": seconds, "model": _relative(model, work)}
        (into / "zoo.json").write_text(json.dumps(facts, indent=1))

    def get(name: str) -> ZooModel:
        if name not in cache:
            made: list[str] = []
            entry = cached(zoo_cache, name, lambda into: (build(name, into), made.append(name)))
            work, bundle = root / f"{name}-src", root / name
            if not made:  # a cache hit: this session's folder gets a copy of the entry
                shutil.copytree(entry / "src", work, symlinks=True)
                if (entry / "bundle").is_dir():
                    shutil.copytree(entry / "bundle", bundle, symlinks=True)
            facts = json.loads((entry / "zoo.json").read_text())
            error = facts["convert_error"]
            report, manifest = None, {}
            if not error:
                manifest = json.loads((bundle / "manifest.json").read_text())
                report = _report(bundle)
            cache[name] = ZooModel(name, None if error else bundle, error, manifest, report, facts["seconds"],
                                   model=work / facts["model"], cached=not made)
            zoo_report.add(cache[name])
        return cache[name]

    return get


def _report(bundle: Path) -> ParityReport:
    """The ParityReport ``verify`` saved in ``bundle/parity.json``."""
    data = json.loads((bundle / "parity.json").read_text())
    fields = {f.name for f in dataclasses.fields(ParityReport)} - {"bundle", "results"}
    results = [Result(**r) for r in data["results"]]
    return ParityReport(bundle=bundle, results=results, **{k: data[k] for k in fields if k in data})


# ``pytest -n`` (--dist loadgroup): the fast models in two groups of about equal build time (measured cold,
# build + convert + verify), each group's test_zoo.py and test_zoo_page.py cases on one worker, so a model is
# built once, by the worker that asserts it, and each worker switches module (runtimes, browser) once.
GROUP_B = ("digits_cnn", "sequence_lstm", "rescaling_resnet", "course_export", "boston_linear", "boston_mlp")


def _group(model: str) -> str:
    if zoo_models.SET.get(model) != "fast":
        return "zoo-full"
    return "zoo-b" if model in GROUP_B else "zoo-a"


def pytest_itemcollected(item: pytest.Item) -> None:
    callspec = getattr(item, "callspec", None)
    model = callspec.params.get("model") if callspec else None
    if item.name == "test_all_runtimes_were_asked":
        model = "digits_cnn"
    if model:
        item.add_marker(pytest.mark.xdist_group(_group(model)))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each zoo case's asserted outcome in the report (the test's own call phase only)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and "zoo_report" in getattr(item, "fixturenames", ()):
        item.funcargs["zoo_report"].outcome(item.name, rep.outcome)
