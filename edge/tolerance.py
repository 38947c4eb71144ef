"""Tolerances per variant and the one rule that judges outputs against the reference.

The parity engine, convert's acceptance of quantized variants, ``deploykit-edge selftest`` and the web
page (``web/src/tolerance.js``, tested on the same cases) all judge with this rule. The bounds follow
each variant's precision and were fixed before any result was seen (docs/architecture.md, "Tolerances",
has the derivation):

* ``scaled`` (float32): ``max|y - ref| <= max_scaled * max|ref|`` over each output. Float32 kernels
  differ from Keras in summation order, fusions and transcendental functions, so the error is a few
  ulps of the *magnitudes summed*, which are the output's scale, not the element's own size (an element
  near zero comes from cancellation). The reference is itself float32, so where convert measured its own
  float32 error against a float64 run of the same model (the output's ``reference_noise`` in the manifest,
  ``noise = max|ref32 - ref64| / max|ref64|``) the bound is ``(max_scaled + 2 * noise) * max|ref|``: the
  reference is ``noise`` away from the exact function and a faithful float32 artifact is as far again.
* ``float16`` (weights stored in half precision): ``max|y - ref| <= max_range_fraction * span`` of the
  output's reference range on DATA (the precision loss a user sees), and ``max|y - twin| <=
  max_twin_scaled * max|twin|``, where the *twin* is the float32 graph with exactly the constants the
  artifact stores in float16 rounded to float16 (``golden.json``'s ``twins``): a faithful artifact
  equals its twin to float32 noise, a broken one does not. Both numbers are reported: ``twin_scaled``
  (converter error) and ``precision_loss`` (twin vs reference, share of the range).
* ``quantized`` (dynamic, int8, int16x8): ``max|y - ref| <= max_range_fraction * span``; for
  classifiers also top-1 agreement ``>= min_top1`` over the *decisive* rows, the rows whose reference
  margin between the two best classes exceeds twice the allowed error (on the others a faithful
  artifact may flip the argmax). Rows that are not decisive are counted and reported.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

FLOAT32 = {"kind": "scaled", "max_scaled": 1e-5}
FLOAT16 = {"kind": "float16", "max_range_fraction": 1e-3, "max_twin_scaled": 1e-5}
QUANTIZED = {"kind": "quantized", "max_range_fraction": 0.01, "min_top1": 0.99}

VARIANT_TOLERANCE: dict[str, dict[str, Any]] = {
    "float32": FLOAT32,
    "float16": FLOAT16,
    "dynamic": QUANTIZED,
    "int8": QUANTIZED,
    "int16x8": QUANTIZED,
}

TINY = float(np.finfo(np.float32).tiny)


def for_variant(variant: str) -> dict[str, Any]:
    """The declared tolerance of a variant (a fresh copy).

    Raises:
        KeyError: an unknown variant.
    """
    return dict(VARIANT_TOLERANCE[variant])


def describe(tolerance: Mapping[str, Any], reference_noise: float | None = None) -> str:
    """A tolerance in words (the page's ``describeTolerance`` says the same); ``reference_noise`` is the
    largest ``outputs[].reference_noise`` of the manifest (float32 tolerances only)."""
    if tolerance["kind"] == "scaled":
        text = f"error ≤ {float(tolerance['max_scaled']):g} of the output's scale"
        if reference_noise is not None:
            text += f" + 2 × the reference's own float32 noise ({float(reference_noise):.3g})"
        return text
    text = f"error ≤ {float(tolerance['max_range_fraction']) * 100:g}% of the output range"
    if tolerance["kind"] == "float16":
        return f"{text}, and within {float(tolerance['max_twin_scaled']):g} of the float16 twin"
    return f"{text}, top-1 ≥ {float(tolerance['min_top1']) * 100:g}% on decisive rows"


def reference_noise(manifest: Mapping[str, Any]) -> float | None:
    """The largest ``outputs[].reference_noise`` of a manifest (None when no output has one)."""
    values = [float(o["reference_noise"]) for o in manifest.get("outputs", []) if o.get("reference_noise") is not None]
    return max(values) if values else None


def _max(values: np.ndarray) -> float:
    return float(values.max()) if values.size else 0.0


def _span(value_range: tuple[float, float], scale: float) -> float:
    """The width of the output's reference range; a constant output is measured against its scale."""
    span = float(value_range[1] - value_range[0])
    return span if span > 0 else max(scale, 1.0)


def _abs_error(reference: np.ndarray, actual: np.ndarray) -> np.ndarray:
    diff = np.abs(actual - reference)
    if not np.all(np.isfinite(actual)):
        diff = np.where(np.isfinite(actual), diff, np.inf)
    return diff


def compare_output(
    reference: np.ndarray,
    actual: np.ndarray,
    value_range: tuple[float, float],
    classifier: bool,
    *,
    decisive_margin: float | None = None,
    twin: np.ndarray | None = None,
) -> dict[str, Any]:
    """Error metrics of one output.

    Always: ``max_abs``, ``max_scaled`` (max_abs / max|ref|), ``range_fraction`` (max_abs / span of the
    reference range) and ``per_row_abs``. Classifiers with ``decisive_margin``: ``top1`` over the decisive
    rows (None when there is none), ``decisive_rows``, ``undecided_rows``. With ``twin``: ``twin_scaled``
    (max|y - twin| / max|twin|) and ``precision_loss`` (max|twin - ref| / span).

    Raises:
        ValueError: the shapes differ.
    """
    ref = np.asarray(reference, dtype=np.float64)
    act = np.asarray(actual, dtype=np.float64)
    if ref.shape != act.shape:
        raise ValueError(f"output shape {list(act.shape)} differs from the reference shape {list(ref.shape)}")
    diff = _abs_error(ref, act)
    scale = _max(np.abs(ref))
    span = _span(value_range, scale)
    worst = _max(diff)
    metrics: dict[str, Any] = {
        "max_abs": worst,
        "max_scaled": worst / max(scale, TINY),
        "range_fraction": worst / span,
        "per_row_abs": [float(v) for v in diff.reshape(diff.shape[0], -1).max(axis=1)] if diff.ndim and diff.size else [],
    }
    if classifier and decisive_margin is not None and ref.ndim >= 2 and ref.shape[-1] > 1:
        flat_ref = ref.reshape(-1, ref.shape[-1])
        flat_act = act.reshape(-1, act.shape[-1])
        top2 = np.sort(flat_ref, axis=-1)[:, -2:]
        decisive = (top2[:, 1] - top2[:, 0]) > decisive_margin
        agree = np.argmax(flat_ref, axis=-1) == np.argmax(flat_act, axis=-1)
        metrics["decisive_rows"] = int(decisive.sum())
        metrics["undecided_rows"] = int((~decisive).sum())
        metrics["top1"] = float(agree[decisive].mean()) if decisive.any() else None
    if twin is not None:
        tw = np.asarray(twin, dtype=np.float64)
        if tw.shape != ref.shape:
            raise ValueError(f"twin output shape {list(tw.shape)} differs from the reference shape {list(ref.shape)}")
        metrics["twin_scaled"] = _max(_abs_error(tw, act)) / max(_max(np.abs(tw)), TINY)
        metrics["precision_loss"] = _max(np.abs(tw - ref)) / span
    return metrics


def _percent(x: float) -> str:
    return f"{x:.3%}"


def scaled_limit(tolerance: Mapping[str, Any], reference_noise: float | None) -> float:
    """The float32 bound on ``max_scaled``: ``max_scaled + 2 * reference_noise`` (the plain ``max_scaled``
    when no noise was recorded)."""
    limit = float(tolerance["max_scaled"])
    return limit if reference_noise is None else limit + 2.0 * float(reference_noise)


def judge(tolerance: Mapping[str, Any], metrics: Mapping[str, Any]) -> tuple[bool, str]:
    """Judge one output's metrics against a tolerance; return (passed, every reason it failed, joined by "; ").

    A float32 (``scaled``) tolerance reads the output's reference noise from ``metrics["reference_noise"]``
    (set by :func:`judge_outputs` from the manifest; absent or None: the plain bound).

    Raises:
        ValueError: an unknown tolerance kind.
    """
    kind = tolerance["kind"]
    if kind not in ("scaled", "float16", "quantized"):
        raise ValueError(f"unknown tolerance kind {kind!r}")
    reasons = []
    if kind == "scaled":
        noise = metrics.get("reference_noise")
        limit = scaled_limit(tolerance, noise)
        if not metrics["max_scaled"] <= limit:
            bound = f"{limit:g}" if noise is None else (f"{limit:.3g} ({float(tolerance['max_scaled']):g} + 2 × "
                                                      f"the reference's own float32 noise {float(noise):.3g})")
            reasons.append(f"max error {metrics['max_scaled']:.3g} of the output's scale (max|ref|) > {bound}")
    else:
        limit = float(tolerance["max_range_fraction"])
        if not metrics["range_fraction"] <= limit:
            reasons.append(f"max error {_percent(metrics['range_fraction'])} of the output range > {limit * 100:g}%")
    if kind == "float16":
        limit = float(tolerance["max_twin_scaled"])
        if "twin_scaled" not in metrics:
            reasons.append("no float16 twin outputs to compare with (golden.json has no 'twins'); re-create the bundle")
        elif not metrics["twin_scaled"] <= limit:
            reasons.append(f"differs from its float16 precision twin by {metrics['twin_scaled']:.3g} of the output's "
                           f"scale > {limit:g} (the converter changed more than the weights' precision)")
    if kind == "quantized":
        top1 = metrics.get("top1")
        if top1 is not None and top1 < float(tolerance["min_top1"]):
            reasons.append(f"top-1 agreement {top1:.2%} < {float(tolerance['min_top1']):.0%} on "
                           f"{metrics['decisive_rows']} decisive rows ({metrics['undecided_rows']} closer than "
                           "twice the bound not counted)")
    return not reasons, "; ".join(reasons)


def judge_outputs(
    manifest: Mapping[str, Any],
    tolerance: Mapping[str, Any],
    reference: Mapping[str, np.ndarray],
    actual: Mapping[str, np.ndarray],
    twin: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Compare every output of a run with the reference; report all failures at once.

    ``manifest`` needs ``task`` and ``outputs`` (``name``, ``key``, ``range``, optionally ``reference_noise``,
    which a float32 tolerance adds twice to its bound and reports in the output's metrics); ``twin`` holds the
    precision twin's outputs for ``float16`` tolerances (``golden.json``'s ``twins[variant]``).

    Returns ``{"passed": bool, "outputs": {name: metrics + passed + reason}, "failures": [...]}``.

    Raises:
        ValueError: an unknown tolerance kind.
    """
    classifier = manifest.get("task") == "classification"
    fraction = tolerance.get("max_range_fraction") if tolerance["kind"] == "quantized" else None
    result: dict[str, Any] = {"passed": True, "outputs": {}, "failures": []}
    for out in manifest["outputs"]:
        key = out["key"]
        if key not in actual:
            result["passed"] = False
            result["failures"].append(f"{out['name']}: output {key!r} missing")
            continue
        value_range = tuple(out["range"])
        ref = np.asarray(reference[key], dtype=np.float64)
        margin = None
        if fraction is not None:
            margin = 2.0 * float(fraction) * _span(value_range, _max(np.abs(ref)))  # type: ignore[arg-type]
        twin_out = None if twin is None or tolerance["kind"] != "float16" else twin.get(key)
        try:
            metrics = compare_output(ref, actual[key], value_range, classifier,  # type: ignore[arg-type]
                                     decisive_margin=margin, twin=twin_out)
        except ValueError as exc:
            result["passed"] = False
            result["failures"].append(f"{out['name']}: {exc}")
            continue
        if tolerance["kind"] == "scaled" and out.get("reference_noise") is not None:
            metrics["reference_noise"] = float(out["reference_noise"])
            metrics["max_scaled_allowed"] = scaled_limit(tolerance, metrics["reference_noise"])
        ok, reason = judge(tolerance, metrics)
        metrics.update(passed=ok, reason=reason)
        result["outputs"][out["name"]] = metrics
        if not ok:
            result["passed"] = False
            result["failures"].append(f"{out['name']}: {reason}")
    return result
