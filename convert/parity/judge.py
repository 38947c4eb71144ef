"""Run one artifact in one runtime and judge it against the reference (``edge.tolerance.judge_outputs``,
with the tolerance its manifest entry declares); then, over all results, tell a TFJS backend that lacks a
kernel (unsupported) from a wrong artifact (failed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from convert import interrupt
from convert.errors import DeployKitError
from convert.parity.report import Result
from convert.parity.runners import TFLITE_RUNTIMES, Progress, Runners
from edge import manifest as mf
from edge.tolerance import judge_outputs


def task_metric(manifest: Mapping[str, Any], outputs: Mapping[str, np.ndarray], labels: np.ndarray | None) -> dict[str, Any] | None:
    """MAE (regression) or accuracy (classification) of the first output against the labels; None without labels."""
    if labels is None:
        return None
    first = np.asarray(outputs[manifest["outputs"][0]["key"]], dtype=np.float64)
    y = np.asarray(labels)
    if manifest.get("task") == "classification":
        pred = np.argmax(first, axis=-1) if first.ndim > 1 and first.shape[-1] > 1 else (first.ravel() > 0.5).astype(int)
        return {"accuracy": float(np.mean(pred.ravel() == y.ravel().astype(int)))}
    return {"mae": float(np.mean(np.abs(first.reshape(len(y), -1)[:, 0] - y.astype(np.float64).ravel())))}


def run_one(runners: Runners, runtime: str, bundle: Path, artifact: Mapping[str, Any], manifest: Mapping[str, Any],
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
class Case:
    """Inputs, the reference outputs for them and (float16) the precision twin's outputs."""

    inputs: Mapping[str, np.ndarray]
    reference: Mapping[str, np.ndarray]
    twin: Mapping[str, np.ndarray] | None = None


def golden_twin(golden: Mapping[str, Any], artifact: Mapping[str, Any]) -> dict[str, np.ndarray] | None:
    """The float16 precision twin's outputs stored in golden.json for this artifact (None unless float16)."""
    twin = mf.golden_twin(dict(golden), artifact["variant"]) if artifact["tolerance"]["kind"] == "float16" else None
    return None if twin is None else {k: np.asarray(v, dtype=np.float64) for k, v in twin.items()}


def sample_twin(root: Path, manifest: Mapping[str, Any], artifact: Mapping[str, Any],
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


def declared_unsupported(runners: Runners, runtime: str, artifact: Mapping[str, Any]) -> str:
    """Why the artifact's own manifest entry says this TFLite runtime cannot run it ('' when it can)."""
    if runtime not in TFLITE_RUNTIMES:
        return ""
    from edge.interpreter import can_run

    worker = runners.workers[runtime]
    ok, reason = can_run(artifact, worker.interpreter, worker.version)
    return "" if ok else reason


def verify_artifact(runners: Runners, runtime: str, root: Path, artifact: Mapping[str, Any], manifest: Mapping[str, Any],
                    golden: Case, sample: Case | None, labels: np.ndarray | None, result: Result,
                    step: Progress) -> None:
    """Run and judge one artifact in one runtime; fill ``result`` (never raises but for a Ctrl+C)."""
    declared = declared_unsupported(runners, runtime, artifact)
    if declared:
        result.status, result.note = "unsupported", declared
        return
    try:
        outputs = run_one(runners, runtime, root, artifact, manifest, golden.inputs, result, step)
        judged = judge_outputs(manifest, artifact["tolerance"], golden.reference, outputs, golden.twin)
        result.golden = {k: {kk: vv for kk, vv in v.items() if kk != "per_row_abs"} for k, v in judged["outputs"].items()}
        rows = [v["per_row_abs"] for v in judged["outputs"].values()]
        result.per_row_abs = [float(max(col)) for col in zip(*rows)] if rows else []
        result.failures = list(judged["failures"])
        result.passed = bool(judged["passed"])
        if sample is not None:
            s_out = run_one(runners, runtime, root, artifact, manifest, sample.inputs, result, step)
            s_judged = judge_outputs(manifest, artifact["tolerance"], sample.reference, s_out, sample.twin)
            result.sample = {k: {kk: vv for kk, vv in v.items() if kk != "per_row_abs"}
                             for k, v in s_judged["outputs"].items()}
            result.failures += [f"sample: {f}" for f in s_judged["failures"]]
            result.passed = result.passed and bool(s_judged["passed"])
            result.task_metric = task_metric(manifest, s_out, labels)
    except Exception as exc:  # noqa: BLE001 - one artifact failing must not hide the others
        interrupt.check()  # but a Ctrl+C (which also stops the workers and the browser) stops the run
        result.passed = False
        result.error = " ".join(str(exc).split())[:400] or type(exc).__name__
    result.status = "passed" if result.passed else "failed"
    if artifact.get("status") == "rejected":
        result.status, result.note = "rejected", str(artifact.get("rejection") or "rejected by convert")


# TFJS's own words when a backend has no kernel (or no variant of one) for an op of the model
_TFJS_MISSING_KERNEL = re.compile(r"not registered for backend|only supports|not (yet )?supported|not implemented", re.I)


def mark_unsupported_backends(results: list[Result]) -> None:
    """A TFJS backend that lacks a kernel the model needs is reported as unsupported, not failed, when
    another backend ran the same artifact and passed (the page then picks a backend that works)."""
    passed = {r.artifact for r in results if r.format != "tflite" and r.status == "passed"}
    for r in results:
        if (r.format != "tflite" and r.status == "failed" and r.artifact in passed
                and r.error.startswith("TFJS ") and _TFJS_MISSING_KERNEL.search(r.error)):
            r.status, r.note = "unsupported", r.error

