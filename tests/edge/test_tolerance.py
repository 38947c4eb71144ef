"""edge.tolerance: the one rule every runner is judged by (the same cases as web/test/tolerance.test.mjs).

Mutation tests on real artifacts (a broken artifact must fail each rule) are in tests/parity/test_mutations.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge.tolerance import FLOAT16, FLOAT32, QUANTIZED, compare_output, for_variant, judge, judge_outputs

A = np.array
MANIFEST = {"task": "regression", "outputs": [{"name": "medv", "key": "output_0", "range": [5.0, 50.0]}]}


def test_every_variant_has_its_declared_tolerance() -> None:
    assert for_variant("float32") == {"kind": "scaled", "max_scaled": 1e-5}
    assert for_variant("float16") == {"kind": "float16", "max_range_fraction": 1e-3, "max_twin_scaled": 1e-5}
    for variant in ("dynamic", "int8", "int16x8"):
        assert for_variant(variant) == {"kind": "quantized", "max_range_fraction": 0.01, "min_top1": 0.99}
    for_variant("float32")["max_scaled"] = 1.0  # a copy: the declared bound cannot be changed by a caller
    assert FLOAT32["max_scaled"] == 1e-5


def test_scaled_measures_error_against_the_output_scale_not_per_element() -> None:
    m = compare_output(A([[1000.0], [1e-6]]), A([[1000.0001], [3e-5]]), (0, 1000), False)
    assert m["max_scaled"] == pytest.approx(1e-7, rel=1e-6)
    assert judge(FLOAT32, m) == (True, "")
    m2 = compare_output(A([[20.0], [30.0]]), A([[20.001], [30.0]]), (5, 50), False)
    assert judge(FLOAT32, m2) == (False, "max error 3.33e-05 of the output's scale (max|ref|) > 1e-05")


def test_non_finite_outputs_fail() -> None:
    m = compare_output(A([[1.0]]), A([[np.nan]]), (0, 1), False)
    assert m["max_abs"] == np.inf
    assert judge(FLOAT32, m) == (False, "max error inf of the output's scale (max|ref|) > 1e-05")
    assert not judge(QUANTIZED, compare_output(A([[1.0]]), A([[np.inf]]), (0, 1), False))[0]


def test_float16_needs_the_range_bound_and_its_precision_twin() -> None:
    ref, twin = A([[10.0], [20.0]]), A([[10.01], [20.0]])
    faithful = compare_output(ref, A([[10.01], [20.0]]), (5, 50), False, twin=twin)
    assert faithful["twin_scaled"] == 0.0
    assert faithful["precision_loss"] == pytest.approx(0.01 / 45)
    assert judge(FLOAT16, faithful) == (True, "")
    broken = compare_output(ref, A([[10.02], [20.0]]), (5, 50), False, twin=twin)
    assert judge(FLOAT16, broken) == (False, "differs from its float16 precision twin by 0.0005 of the output's scale "
                                             "> 1e-05 (the converter changed more than the weights' precision)")
    far = compare_output(ref, A([[10.1], [20.0]]), (5, 50), False, twin=twin)
    assert judge(FLOAT16, far) == (False, "max error 0.222% of the output range > 0.1%; differs from its float16 "
                                          "precision twin by 0.0045 of the output's scale > 1e-05 (the converter "
                                          "changed more than the weights' precision)")  # every reason at once
    alone = compare_output(ref, A([[10.01], [20.0]]), (5, 50), False)
    assert judge(FLOAT16, alone) == (False, "no float16 twin outputs to compare with (golden.json has no 'twins'); "
                                            "re-create the bundle")


def test_quantized_top1_counts_only_decisive_rows() -> None:
    m = compare_output(A([[10.0], [20.0]]), A([[10.3], [20.0]]), (5, 50), False)
    assert m["range_fraction"] == pytest.approx(0.3 / 45)
    assert judge(QUANTIZED, m) == (True, "")
    assert judge(QUANTIZED, compare_output(A([[10.0]]), A([[11.0]]), (5, 50), False)) == (
        False, "max error 2.222% of the output range > 1%")
    ref = A([[0.9, 0.1], [0.505, 0.495], [0.2, 0.8]])
    near_flip = compare_output(ref, A([[0.9, 0.1], [0.495, 0.505], [0.2, 0.8]]), (0, 1), True, decisive_margin=0.02)
    assert (near_flip["top1"], near_flip["decisive_rows"], near_flip["undecided_rows"]) == (1.0, 2, 1)
    flipped = compare_output(ref, A([[0.1, 0.9], [0.505, 0.495], [0.2, 0.8]]), (0, 1), True, decisive_margin=0.02)
    assert judge({**QUANTIZED, "max_range_fraction": 1.0}, flipped) == (
        False, "top-1 agreement 50.00% < 99% on 2 decisive rows (1 closer than twice the bound not counted)")
    none_decisive = compare_output(A([[0.5, 0.5]]), A([[0.4, 0.6]]), (0, 1), True, decisive_margin=0.02)
    assert none_decisive["top1"] is None and none_decisive["undecided_rows"] == 1


def test_judge_outputs_derives_the_decisive_margin_from_the_bound() -> None:
    manifest = {"task": "classification", "outputs": [{"name": "p", "key": "k", "range": [0.0, 1.0]}]}
    ref = {"k": A([[0.6, 0.4], [0.515, 0.485]])}  # margins 0.2 and 0.03: decisive iff > 2 x 1% of the range
    got = {"k": A([[0.6, 0.4], [0.485, 0.515]])}
    out = judge_outputs(manifest, QUANTIZED, ref, got)["outputs"]["p"]
    assert (out["decisive_rows"], out["top1"]) == (2, 0.5)
    assert out["reason"].startswith("max error 3.000% of the output range")


def test_judge_outputs_reports_every_failure_at_once() -> None:
    manifest = {"task": "regression", "outputs": [{"name": "a", "key": "k0", "range": [0, 1]},
                                                  {"name": "b", "key": "k1", "range": [0, 1]},
                                                  {"name": "c", "key": "k2", "range": [0, 1]}]}
    ref = {"k0": A([[1.0]]), "k1": A([[1.0, 2.0]]), "k2": A([[1.0]])}
    verdict = judge_outputs(manifest, FLOAT32, ref, {"k0": A([[2.0]]), "k1": A([[1.0]])})
    assert not verdict["passed"]
    assert verdict["failures"] == ["a: max error 1 of the output's scale (max|ref|) > 1e-05",
                                   "b: output shape [1, 1] differs from the reference shape [1, 2]",
                                   "c: output 'k2' missing"]


def test_outputs_of_any_rank() -> None:
    image = np.arange(2 * 3 * 3 * 4, dtype=np.float64).reshape(2, 3, 3, 4)
    verdict = judge_outputs(MANIFEST, FLOAT32, {"output_0": image}, {"output_0": image + 1e-6})
    assert verdict["passed"]
    assert len(verdict["outputs"]["medv"]["per_row_abs"]) == 2


def test_unknown_kind_raises() -> None:
    with pytest.raises(ValueError, match="unknown tolerance kind 'x'"):
        judge({"kind": "x"}, {})


def test_tolerances_in_words() -> None:
    from edge.tolerance import describe

    assert describe(FLOAT32) == "error ≤ 1e-05 of the output's scale"
    assert describe(FLOAT16) == "error ≤ 0.1% of the output range, and within 1e-05 of the float16 twin"
    assert describe(QUANTIZED) == "error ≤ 1% of the output range, top-1 ≥ 99% on decisive rows"
    assert describe(FLOAT32, 1.82e-5) == "error ≤ 1e-05 of the output's scale + 2 × the reference's own float32 noise (1.82e-05)"


def _noisy_manifest(noise: float | None) -> dict:
    out = {"name": "y", "key": "output_0", "range": [0.0, 10.0]}
    if noise is not None:
        out["reference_noise"] = noise
    return {"task": "regression", "outputs": [out]}


def test_float32_bound_adds_twice_the_reference_noise() -> None:
    from edge.tolerance import reference_noise, scaled_limit

    ref = {"output_0": np.array([[10.0], [5.0]])}
    act = {"output_0": np.array([[10.0 + 3e-4], [5.0]])}  # 3e-5 of scale
    plain = judge_outputs(_noisy_manifest(None), FLOAT32, ref, act)
    assert plain["failures"] == ["y: max error 3e-05 of the output's scale (max|ref|) > 1e-05"]
    assert "reference_noise" not in plain["outputs"]["y"]
    noisy = judge_outputs(_noisy_manifest(1.82e-5), FLOAT32, ref, act)  # bound 1e-5 + 2 * 1.82e-5 = 4.64e-5
    assert noisy["passed"] is True
    assert noisy["outputs"]["y"]["reference_noise"] == 1.82e-5
    assert noisy["outputs"]["y"]["max_scaled_allowed"] == pytest.approx(4.64e-5, rel=1e-12)
    too_far = judge_outputs(_noisy_manifest(5e-6), FLOAT32, ref, act)  # bound 2e-5
    assert too_far["failures"] == ["y: max error 3e-05 of the output's scale (max|ref|) > 2e-05 "
                                   "(1e-05 + 2 × the reference's own float32 noise 5e-06)"]
    assert scaled_limit(FLOAT32, None) == 1e-5
    assert reference_noise(_noisy_manifest(None)) is None
    assert reference_noise({"outputs": [{"reference_noise": 1e-7}, {}, {"reference_noise": 3e-7}]}) == 3e-7


def test_reference_noise_never_widens_other_variants() -> None:
    ref = {"output_0": np.array([[10.0], [0.0]])}
    act = {"output_0": np.array([[10.2], [0.0]])}  # 2% of the range
    verdict = judge_outputs(_noisy_manifest(0.5), QUANTIZED, ref, act)
    assert verdict["failures"] == ["y: max error 2.000% of the output range > 1%"]
    assert "reference_noise" not in verdict["outputs"]["y"]


def test_a_broken_artifact_fails_even_with_the_largest_recordable_noise() -> None:
    """convert records at most 1e-3 of noise (convert.reference_noise.MAX_NOISE, checked in
    tests/test_reference_noise.py): the bound is then 2.01e-3 of scale, and a 1 % change of the output still fails."""
    MAX_NOISE = 1e-3
    ref = {"output_0": np.array([[10.0], [5.0]])}
    act = {"output_0": np.array([[10.1], [5.05]])}
    verdict = judge_outputs(_noisy_manifest(MAX_NOISE), FLOAT32, ref, act)
    assert verdict["passed"] is False
