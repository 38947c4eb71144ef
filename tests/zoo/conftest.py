"""Zoo fixtures: each model is built, converted (through the CLI) and verified once per module, on first use;
one set of runtimes per module (Playwright sync allows one live instance per thread).

Every model's outcome is also written to ``test-artifacts/zoo_report.json`` as soon as it is known (model x
artifact x runtime: passed, error, metrics, status; build / convert / verify seconds), so a run shows what
happened without a script; ``python tests/zoo/zoo_table.py`` prints it as the README's table.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from convert.parity.engine import ParityReport, Runners, verify_bundle

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import zoo_models  # noqa: E402

QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3", "TFDF_DISABLE_WELCOME_MESSAGE": "1", "CUDA_VISIBLE_DEVICES": "-1"}
REPORT = Path(os.environ.get("ZOO_REPORT") or HERE.parents[1] / "test-artifacts" / "zoo_report.json")


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = {"schema_version": 1, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "models": self.models, "cases": self.cases}
        tmp = self.path.with_name(self.path.name + ".tmp")
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
            "seconds": {k: round(v, 1) for k, v in entry.seconds.items()}, "convert_error": entry.convert_error,
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


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, zoo_runners: Runners, zoo_report: ZooReport, zoo_built: dict[str, ZooModel],
        request) -> Callable[[str], ZooModel]:
    """``zoo(name) -> ZooModel``: build, convert (CLI) and verify a zoo model once per session."""
    cache = zoo_built
    root = tmp_path_factory.mktemp("zoo")

    def get(name: str) -> ZooModel:
        if name not in cache:
            seconds: dict[str, float] = {}
            start = time.perf_counter()
            error = ""
            if name in zoo_models.BOSTON:
                model = request.getfixturevalue(name)
                bundle = Path(shutil.copytree(request.getfixturevalue(f"{name}_bundle"), root / name))
            else:
                work = root / f"{name}-src"
                work.mkdir()
                if name in zoo_models.FROM_FIXTURE:
                    builder, fixture = zoo_models.FROM_FIXTURE[name]
                    model, data, target = builder(work, request.getfixturevalue(fixture))
                else:
                    model, data, target = zoo_models.BUILDERS[name](work)
                seconds["build"] = time.perf_counter() - start
                bundle = root / name
                error = _convert(model, data, target, bundle)
                seconds["convert"] = time.perf_counter() - start - seconds["build"]
            report = None
            manifest: dict[str, Any] = {}
            if not error:
                manifest = json.loads((bundle / "manifest.json").read_text())
                begin = time.perf_counter()
                report = verify_bundle(bundle, model=model, runners=zoo_runners)
                seconds["verify"] = time.perf_counter() - begin
                manifest = json.loads((bundle / "manifest.json").read_text())
            cache[name] = ZooModel(name, None if error else bundle, error, manifest, report, seconds, model=Path(model))
            zoo_report.add(cache[name])
        return cache[name]

    return get


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Record each zoo case's asserted outcome in the report (the test's own call phase only)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and "zoo_report" in getattr(item, "fixturenames", ()):
        item.funcargs["zoo_report"].outcome(item.name, rep.outcome)
