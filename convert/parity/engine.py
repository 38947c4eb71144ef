"""The parity engine: every artifact of a bundle, in its real runtime, against the Keras reference.

TFLite artifacts run in ``litert`` and ``tflite-runtime`` subprocesses (``edge.parity_worker`` inside
environments without TensorFlow, see ``convert.parity.envs``); TFJS artifacts run in headless Chromium on
the cpu, wasm and webgl backends (``convert.parity.browser``). Each artifact x runtime is judged by
``edge.tolerance.judge_outputs`` against the tolerance its manifest entry declares.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from convert import interrupt
from convert.errors import DeployKitError
from edge import manifest as mf
from edge.interpreter import LIGHT_RUNTIMES
from edge.tolerance import judge_outputs

TFLITE_RUNTIMES = set(LIGHT_RUNTIMES)  # "litert", "tflite-runtime"
RUNTIMES = (*LIGHT_RUNTIMES, "chromium-cpu", "chromium-wasm", "chromium-webgl")
SAMPLE_ROWS = 256

Progress = Callable[[str], None]


def parse_runtimes(value: str | Iterable[str] | None) -> list[str]:
    """``"litert,chromium-cpu"`` -> a checked list (default: all runtimes).

    Raises:
        DeployKitError: an unknown runtime name, or an empty list.
    """
    if value is None:
        return list(RUNTIMES)
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise DeployKitError(f"unknown runtime {unknown[0]!r} in --runtimes; choose from {', '.join(RUNTIMES)}")
    if not names:
        raise DeployKitError(f"--runtimes is empty; choose from {', '.join(RUNTIMES)}")
    return [n for n in RUNTIMES if n in names]


# --------------------------------------------------------------------------- runners


class _Worker:
    """One ``edge.parity_worker`` subprocess in a runtime environment."""

    def __init__(self, name: str, progress: Progress | None = None) -> None:
        from convert.parity import envs

        self.env = envs.ensure(name, progress)
        self.name = name
        self.proc = subprocess.Popen(
            [str(self.env.python), "-m", "edge.parity_worker", "--runtime", self.env.module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/",
            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
        hello = self._read()
        if "error" in hello:
            self.close()
            raise DeployKitError(f"runtime {name} cannot start: {hello['error']}")
        self.version = str(hello.get("version", ""))
        self.interpreter = str(hello.get("runtime", ""))

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise DeployKitError(f"the {self.name} worker exited (status {self.proc.poll()}); rerun, or delete "
                                 f"{self.env.python.parents[1]} to re-create the environment")
        return json.loads(line)

    def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


class Runners:
    """The runtimes of a parity run, started lazily and reused: one worker per TFLite runtime, one browser.

    Use as a context manager (or call ``close``). Pass one ``Runners`` to many ``verify_bundle`` calls
    to reuse the subprocesses and the browser.
    """

    def __init__(self) -> None:
        self.workers: dict[str, _Worker] = {}
        self.browser: Any = None

    def __enter__(self) -> "Runners":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def worker(self, name: str, progress: Progress | None = None) -> _Worker:
        if name not in self.workers:
            self.workers[name] = _Worker(name, progress)
        return self.workers[name]

    def chromium(self) -> Any:
        if self.browser is None:
            from convert.parity.browser import Browser

            browser = Browser()
            browser.start()
            self.browser = browser
        return self.browser

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
        if self.browser is not None:
            self.browser.close()
            self.browser = None


# --------------------------------------------------------------------------- report


@dataclass
class Result:
    """One artifact in one runtime."""

    artifact: str
    format: str
    variant: str
    runtime: str
    bytes: int
    tolerance: dict[str, Any]
    passed: bool = False
    status: str = "failed"        # passed | failed | rejected (by convert) | unsupported (declared, or a TFJS backend)
    note: str = ""                # why rejected / unsupported
    error: str = ""
    failures: list[str] = field(default_factory=list)
    runtime_version: str = ""
    interpreter: str = ""
    backend_used: str = ""
    tfjs_version: str = ""
    user_agent: str = ""
    golden: dict[str, Any] = field(default_factory=dict)   # per output metrics on golden.json
    per_row_abs: list[float] = field(default_factory=list)  # max |err| per golden row, over outputs
    sample: dict[str, Any] | None = None                   # same on the --data sample
    task_metric: dict[str, Any] | None = None              # MAE / accuracy vs labels (information only)

    def summary(self) -> dict[str, Any]:
        """The compact form recorded in manifest.json."""
        return {"artifact": self.artifact, "runtime": self.runtime, "interpreter": self.interpreter,
                "version": self.runtime_version, "passed": self.passed, "status": self.status,
                **{k: self.worst(k) for k in ("max_abs", "max_scaled", "range_fraction")},
                **({"note": self.note} if self.note else {}), **({"error": self.error} if self.error else {})}

    def worst(self, key: str) -> float | None:
        """The largest value of one golden metric over the outputs (None when no output has it)."""
        values = [m[key] for m in self.golden.values() if m.get(key) is not None]
        return max(values) if values else None


@dataclass
class ParityReport:
    """The outcome of ``verify_bundle``."""

    bundle: Path
    name: str
    runtimes: list[str]
    reference: str
    results: list[Result]
    at: str
    seconds: float = 0.0
    sample_rows: int = 0
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no artifact that convert accepted failed in a runtime that can run it."""
        return bool(self.results) and all(r.status != "failed" for r in self.results)

    def by_status(self, status: str) -> list[Result]:
        return [r for r in self.results if r.status == status]

    def to_json(self) -> dict[str, Any]:
        return {"schema_version": 1, "bundle": str(self.bundle), "name": self.name, "passed": self.passed,
                "at": self.at, "seconds": round(self.seconds, 3), "reference": self.reference,
                "runtimes": self.runtimes, "sample_rows": self.sample_rows, "environment": self.environment,
                "results": [asdict(r) for r in self.results]}

    def save(self, bundle: Path | None = None) -> None:
        """Write parity.json and report.html and record the outcome in manifest.json (+ web/manifest.json).

        Raises:
            BundleError: the updated manifest would not be valid (never expected).
        """
        from convert.parity.html import render

        root = Path(bundle or self.bundle)
        data = self.to_json()
        _atomic_write(root / "parity.json", json.dumps(data, indent=1, allow_nan=True))
        _atomic_write(root / "report.html", render(data))
        manifest = json.loads((root / mf.MANIFEST).read_text(encoding="utf-8"))
        manifest["parity"] = {"passed": self.passed, "at": self.at, "reference": self.reference,
                              "runtimes": self.runtimes, "report": "parity.json",
                              "results": [_finite(r.summary()) for r in self.results]}
        mf.validate(manifest)
        text = json.dumps(manifest, indent=1)
        _atomic_write(root / mf.MANIFEST, text)
        web_manifest = root / "web" / mf.MANIFEST
        if web_manifest.is_file():
            _atomic_write(web_manifest, text)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    return obj


def _atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` atomically through a private temporary file, never through a symbolic link.

    Raises:
        DeployKitError: ``path`` or its folder is a symbolic link, or it cannot be written.
    """
    from convert.files import replace_file

    replace_file(path, text)


# --------------------------------------------------------------------------- engine


def _golden_arrays(golden: Mapping[str, Any], manifest: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    try:
        inputs = {s["name"]: np.asarray(golden["inputs"][s["name"]], dtype=np.float64) for s in manifest["inputs"]}
        outputs = {o["key"]: np.asarray(golden["outputs"][o["key"]], dtype=np.float64) for o in manifest["outputs"]}
    except (KeyError, ValueError, TypeError) as exc:
        raise DeployKitError(f"golden.json does not match manifest.json ({exc}); re-create the bundle") from None
    return inputs, outputs


def _task_metric(manifest: Mapping[str, Any], outputs: Mapping[str, np.ndarray], labels: np.ndarray | None) -> dict[str, Any] | None:
    if labels is None:
        return None
    first = np.asarray(outputs[manifest["outputs"][0]["key"]], dtype=np.float64)
    y = np.asarray(labels)
    if manifest.get("task") == "classification":
        pred = np.argmax(first, axis=-1) if first.ndim > 1 and first.shape[-1] > 1 else (first.ravel() > 0.5).astype(int)
        return {"accuracy": float(np.mean(pred.ravel() == y.ravel().astype(int)))}
    return {"mae": float(np.mean(np.abs(first.reshape(len(y), -1)[:, 0] - y.astype(np.float64).ravel())))}


def _run_one(runners: Runners, runtime: str, bundle: Path, artifact: Mapping[str, Any], manifest: Mapping[str, Any],
             inputs: Mapping[str, np.ndarray], result: Result, progress: Progress | None) -> dict[str, np.ndarray]:
    """Outputs of one artifact in one runtime. Raises DeployKitError/EdgeError on failure."""
    if runtime in TFLITE_RUNTIMES:
        worker = runners.worker(runtime, progress)
        reply = worker.request({"bundle": str(bundle), "artifact": artifact["path"],
                                "inputs": {k: np.asarray(v).tolist() for k, v in inputs.items()}})
        if "error" in reply:
            raise DeployKitError(reply["error"])
        result.runtime_version, result.interpreter = str(reply.get("version", "")), str(reply.get("runtime", ""))
        return {k: np.asarray(v, dtype=np.float64) for k, v in reply["outputs"].items()}
    backend = runtime.split("-", 1)[1]
    run = runners.chromium().run(bundle, artifact, manifest, backend, inputs)  # the page applies input_transform
    if run["backend"] != backend:
        raise DeployKitError(f"TFJS ran {artifact['path']} on {run['backend']!r}, not the requested {backend!r}")
    result.backend_used, result.tfjs_version, result.user_agent = run["backend"], run["version"], run["user_agent"]
    result.runtime_version = f"TFJS {run['version']}"
    result.interpreter = f"chromium/{backend}" + ("" if run.get("webgl_float32") in (None, True) else " (half-float textures)")
    return run["outputs"]


@dataclass
class _Case:
    """Inputs, the reference outputs for them and (float16) the precision twin's outputs."""

    inputs: Mapping[str, np.ndarray]
    reference: Mapping[str, np.ndarray]
    twin: Mapping[str, np.ndarray] | None = None


def _twin(golden: Mapping[str, Any], artifact: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    twin = mf.golden_twin(dict(golden), artifact["variant"]) if artifact["tolerance"]["kind"] == "float16" else None
    return None if twin is None else {k: np.asarray(v, dtype=np.float64) for k, v in twin.items()}


def _sample_twin(root: Path, manifest: Mapping[str, Any], artifact: Mapping[str, Any],
                 inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The float16 twin's outputs on the --data sample, rebuilt from the bundle's own fp32 and fp16 files."""
    if artifact["tolerance"]["kind"] != "float16":
        return None
    fp32 = next((a for a in manifest["artifacts"] if a["format"] == "tflite" and a["variant"] == "float32"), None)
    if fp32 is None:
        return None
    from convert.twin import twin_outputs

    return twin_outputs(mf.safe_join(root, fp32["path"]).read_bytes(), mf.safe_join(root, artifact["path"]).read_bytes(),
                        manifest, inputs)


def _declared_unsupported(runners: Runners, runtime: str, artifact: Mapping[str, Any]) -> str:
    """Why the artifact's own manifest entry says this TFLite runtime cannot run it ('' when it can)."""
    if runtime not in TFLITE_RUNTIMES:
        return ""
    from edge.interpreter import can_run

    worker = runners.workers[runtime]
    ok, reason = can_run(artifact, worker.interpreter, worker.version)
    return "" if ok else reason


def _verify_artifact(runners: Runners, runtime: str, root: Path, artifact: Mapping[str, Any], manifest: Mapping[str, Any],
                     golden: _Case, sample: _Case | None, labels: np.ndarray | None, result: Result,
                     step: Progress) -> None:
    """Run and judge one artifact in one runtime; fill ``result`` (never raises but for a Ctrl+C)."""
    declared = _declared_unsupported(runners, runtime, artifact)
    if declared:
        result.status, result.note = "unsupported", declared
        return
    try:
        outputs = _run_one(runners, runtime, root, artifact, manifest, golden.inputs, result, step)
        judged = judge_outputs(manifest, artifact["tolerance"], golden.reference, outputs, golden.twin)
        result.golden = {k: {kk: vv for kk, vv in v.items() if kk != "per_row_abs"} for k, v in judged["outputs"].items()}
        rows = [v["per_row_abs"] for v in judged["outputs"].values()]
        result.per_row_abs = [float(max(col)) for col in zip(*rows)] if rows else []
        result.failures = list(judged["failures"])
        result.passed = bool(judged["passed"])
        if sample is not None:
            s_out = _run_one(runners, runtime, root, artifact, manifest, sample.inputs, result, step)
            s_judged = judge_outputs(manifest, artifact["tolerance"], sample.reference, s_out, sample.twin)
            result.sample = {k: {kk: vv for kk, vv in v.items() if kk != "per_row_abs"}
                             for k, v in s_judged["outputs"].items()}
            result.failures += [f"sample: {f}" for f in s_judged["failures"]]
            result.passed = result.passed and bool(s_judged["passed"])
            result.task_metric = _task_metric(manifest, s_out, labels)
    except Exception as exc:  # noqa: BLE001 - one artifact failing must not hide the others
        interrupt.check()  # but a Ctrl+C (which also stops the workers and the browser) stops the run
        result.passed = False
        result.error = " ".join(str(exc).split())[:400] or type(exc).__name__
    result.status = "passed" if result.passed else "failed"
    if artifact.get("status") == "rejected":
        result.status, result.note = "rejected", str(artifact.get("rejection") or "rejected by convert")


# TFJS's own words when a backend has no kernel (or no variant of one) for an op of the model
_TFJS_MISSING_KERNEL = re.compile(r"not registered for backend|only supports|not (yet )?supported|not implemented", re.I)


def _unsupported_backends(results: list[Result]) -> None:
    """A TFJS backend that lacks a kernel the model needs is reported as unsupported, not failed, when
    another backend ran the same artifact and passed (the page then picks a backend that works)."""
    passed = {r.artifact for r in results if r.format != "tflite" and r.status == "passed"}
    for r in results:
        if (r.format != "tflite" and r.status == "failed" and r.artifact in passed
                and r.error.startswith("TFJS ") and _TFJS_MISSING_KERNEL.search(r.error)):
            r.status, r.note = "unsupported", r.error


@dataclass(frozen=True)
class VerifyOptions:
    """What ``deploykit verify`` takes: the bundle; the reference model (None: the one the bundle was converted
    from, if found); the runtimes, comma-separated (None: all); a larger DATA sample and its label column."""

    bundle: Path
    model: Path | None = None
    runtimes: str | None = None
    data: Path | None = None
    target: str | None = None
    custom_objects: Path | None = None  # the Python file defining ``model``'s custom layers


def verify(options: VerifyOptions, progress: Progress | None = None) -> ParityReport:
    """:func:`verify_bundle` with the command's options; the report is saved into the bundle.

    Raises:
        BundleError, DeployKitError: as :func:`verify_bundle`.
    """
    return verify_bundle(options.bundle, model=options.model, runtimes=options.runtimes, data=options.data,
                         target=options.target, progress=progress, custom_objects=options.custom_objects)


def verify_bundle(bundle: str | Path, model: str | Path | None = None, runtimes: str | Iterable[str] | None = None,
                  data: str | Path | None = None, target: str | None = None, progress: Progress | None = None,
                  runners: Runners | None = None, save: bool = True,
                  custom_objects: str | Path | None = None) -> ParityReport:
    """Verify every artifact of a bundle in every requested runtime; save the report into the bundle.
    ``custom_objects``: the Python file defining ``model``'s custom layers (``--custom-objects``).

    Raises:
        BundleError: not a bundle, unknown schema version, a file that does not match its sha256.
        DeployKitError: unknown runtime, a runtime that cannot be created or started, bad --model/--data.
    """
    import time

    start = time.perf_counter()
    step = progress or (lambda _msg: None)
    root = Path(bundle).expanduser().resolve()  # workers run in "/", the browser's server elsewhere
    step(f"Checking {root}")
    manifest = mf.load(root)
    mf.check_all_files(root, manifest)
    golden = mf.load_golden(root)
    names = parse_runtimes(runtimes)
    g_inputs, g_reference = _golden_arrays(golden, manifest)
    reference_label = "golden.json (Keras outputs stored at conversion)"
    sample_inputs: dict[str, np.ndarray] | None = None
    sample_reference: dict[str, np.ndarray] | None = None
    labels = None
    if model is not None:
        from convert import reference as ref_mod

        step(f"Running the reference model {Path(model).name}")
        ref = ref_mod.load(Path(model), Path(custom_objects) if custom_objects else None)
        feeds = {s["name"]: g_inputs[s["name"]].astype(s["dtype"]) for s in manifest["inputs"]}
        g_reference = {k: np.asarray(v, dtype=np.float64) for k, v in ref.predict(feeds).items()}
        reference_label = f"Keras model {Path(model).name}"
        if data is not None:
            from convert.dataset import load_dataset

            feature_names = [f["name"] for f in manifest.get("features") or []] or None
            dataset = load_dataset(ref, Path(data), target, feature_names)
            rng = np.random.default_rng(0)
            rows = dataset.rows
            pick = np.sort(rng.choice(rows, size=min(SAMPLE_ROWS, rows), replace=False))
            sample_inputs = {k: np.asarray(v)[pick] for k, v in dataset.inputs.items()}
            sample_reference = {k: np.asarray(v, dtype=np.float64) for k, v in ref.predict(sample_inputs).items()}
            labels = None if dataset.labels is None else np.asarray(dataset.labels)[pick]
    elif data is not None:
        raise DeployKitError("--data needs --model: the larger sample is compared with the Keras model's own outputs")

    own = runners is None
    runners = runners or Runners()
    for worker in runners.workers.values():
        worker.request({"reset": True})
    results: list[Result] = []
    try:
        for runtime in names:
            fmts = ("tflite",) if runtime in TFLITE_RUNTIMES else ("tfjs_graph", "tfjs_layers")
            # A runtime that cannot start is an error for the whole run (unless --runtimes leaves it out).
            if runtime in TFLITE_RUNTIMES:
                runners.worker(runtime, step)
            else:
                runners.chromium()
            for artifact in [a for a in manifest["artifacts"] if a["format"] in fmts]:
                step(f"{artifact['path']} on {runtime}")
                result = Result(artifact=artifact["path"], format=artifact["format"], variant=artifact["variant"],
                                runtime=runtime, bytes=int(artifact["bytes"]), tolerance=dict(artifact["tolerance"]))
                golden_case = _Case(g_inputs, g_reference, _twin(golden, artifact))
                sample_case = None
                if sample_inputs is not None and sample_reference is not None:
                    sample_case = _Case(sample_inputs, sample_reference, _sample_twin(root, manifest, artifact, sample_inputs))
                _verify_artifact(runners, runtime, root, artifact, manifest, golden_case, sample_case, labels, result, step)
                results.append(result)
        _unsupported_backends(results)
        env: dict[str, Any] = {name: w.env.versions for name, w in runners.workers.items()}
        if runners.browser is not None:
            env["chromium"] = {"executable": runners.browser.executable,
                               "user_agent": next((r.user_agent for r in results if r.user_agent), "")}
    finally:
        if own:
            runners.close()
    report = ParityReport(bundle=root, name=str(manifest["name"]), runtimes=names, reference=reference_label,
                          results=results, at=_dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                          seconds=time.perf_counter() - start, environment=env,
                          sample_rows=0 if sample_inputs is None else int(next(iter(sample_inputs.values())).shape[0]))
    if save:
        step("Writing parity.json, report.html and the manifest")
        report.save(root)
    return report
