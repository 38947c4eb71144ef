"""Tolerances per variant and the one rule that judges outputs against the reference.

The parity engine, ``deploykit-edge selftest`` and the web page (``web/src/tolerance.js``, tested on the
same cases) all judge with this rule:

* ``relative`` (float32: 1e-5, float16: 1e-3): for every element,
  ``|y - ref| / max(|ref|, 0.01 * max|ref|) <= max_rel``, where ``max|ref|`` is taken over the whole output.
  The floor keeps near-zero references (a softmax's tiny probabilities) from demanding the impossible.
* ``quantized`` (dynamic, int8, int16x8): ``max|y - ref| <= max_range_fraction * (range_hi - range_lo)``,
  the range being the reference model's output range on DATA; for classifiers also
  ``top-1 agreement >= min_top1``.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

FLOAT32 = {"kind": "relative", "max_rel": 1e-5}
FLOAT16 = {"kind": "relative", "max_rel": 1e-3}
QUANTIZED = {"kind": "quantized", "max_range_fraction": 0.01, "min_top1": 0.99}

VARIANT_TOLERANCE: dict[str, dict[str, Any]] = {
    "float32": FLOAT32,
    "float16": FLOAT16,
    "dynamic": QUANTIZED,
    "int8": QUANTIZED,
    "int16x8": QUANTIZED,
}


def for_variant(variant: str) -> dict[str, Any]:
    """The declared tolerance of a variant (a fresh copy)."""
    return dict(VARIANT_TOLERANCE[variant])


def compare_output(
    reference: np.ndarray, actual: np.ndarray, value_range: tuple[float, float], classifier: bool
) -> dict[str, Any]:
    """Error metrics of one output: max_abs, max_rel, range_fraction and (classifiers) top1.

    Raises:
        ValueError: the shapes differ.
    """
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64)
    if ref.shape != act.shape:
        raise ValueError(f"output shape {act.shape} differs from the reference shape {ref.shape}")
    diff = np.abs(act - ref)
    if not np.all(np.isfinite(act)):
        diff = np.where(np.isfinite(act), diff, np.inf)
    scale = float(np.max(np.abs(ref))) if ref.size else 0.0
    floor = max(0.01 * scale, np.finfo(np.float32).tiny)
    rel = diff / np.maximum(np.abs(ref), floor)
    span = float(value_range[1] - value_range[0])
    if not span > 0:
        span = max(scale, 1.0)
    metrics: dict[str, Any] = {
        "max_abs": float(diff.max()) if diff.size else 0.0,
        "max_rel": float(rel.max()) if rel.size else 0.0,
        "range_fraction": float(diff.max() / span) if diff.size else 0.0,
        "per_row_abs": [float(v) for v in diff.reshape(diff.shape[0], -1).max(axis=1)] if diff.ndim else [],
    }
    if classifier and ref.ndim >= 2 and ref.shape[-1] > 1:
        metrics["top1"] = float(np.mean(np.argmax(ref, axis=-1) == np.argmax(act, axis=-1)))
    return metrics


def judge(tolerance: Mapping[str, Any], metrics: Mapping[str, Any]) -> tuple[bool, str]:
    """Judge one output's metrics against a tolerance; return (passed, reason when failed)."""
    if tolerance["kind"] == "relative":
        limit = float(tolerance["max_rel"])
        if not metrics["max_rel"] <= limit:
            return False, f"max relative error {metrics['max_rel']:.3g} > {limit:g}"
        return True, ""
    if tolerance["kind"] == "quantized":
        limit = float(tolerance["max_range_fraction"])
        if not metrics["range_fraction"] <= limit:
            return False, f"max error {metrics['range_fraction']:.3%} of the output range > {limit:.0%}"
        top1 = metrics.get("top1")
        if top1 is not None and top1 < float(tolerance["min_top1"]):
            return False, f"top-1 agreement {top1:.2%} < {float(tolerance['min_top1']):.0%}"
        return True, ""
    raise ValueError(f"unknown tolerance kind {tolerance['kind']!r}")


def judge_outputs(
    manifest: Mapping[str, Any],
    tolerance: Mapping[str, Any],
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Compare every output of a run with the reference; report all failures at once.

    Returns ``{"passed": bool, "outputs": {key: metrics + passed + reason}, "failures": [...]}``.
    """
    classifier = manifest.get("task") == "classification"
    result: dict[str, Any] = {"passed": True, "outputs": {}, "failures": []}
    for out in manifest["outputs"]:
        key = out["key"]
        if key not in actual:
            result["passed"] = False
            result["failures"].append(f"{out['name']}: output {key!r} missing")
            continue
        metrics = compare_output(reference[key], actual[key], tuple(out["range"]), classifier)
        ok, reason = judge(tolerance, metrics)
        metrics.update(passed=ok, reason=reason)
        result["outputs"][out["name"]] = metrics
        if not ok:
            result["passed"] = False
            result["failures"].append(f"{out['name']}: {reason}")
    return result
