"""edge.drift: the numpy KS test against scipy, and the monitor's flag."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.drift import DriftMonitor, ks_2samp

scipy_stats = pytest.importorskip("scipy.stats")


def _close(p: float, q: float) -> bool:
    return abs(p - q) <= 1e-6 * max(q, 1e-300) or abs(p - q) < 1e-12


@pytest.mark.parametrize("n1, n2, shift", [(5, 7, 0.0), (30, 30, 0.5), (100, 506, 0.0), (500, 506, 0.1),
                                           (500, 506, 0.3), (37, 1000, 0.2), (64, 48, 1.0), (1, 3, 0.0)])
def test_ks_matches_scipy(n1: int, n2: int, shift: float) -> None:
    rng = np.random.default_rng(n1 * 1000 + n2)
    a, b = rng.normal(shift, 1, n1), rng.normal(0, 1, n2)
    d, p = ks_2samp(a, b)
    ref = scipy_stats.ks_2samp(a, b)
    assert d == pytest.approx(float(ref.statistic), abs=1e-12)
    assert _close(p, float(ref.pvalue)), (p, float(ref.pvalue))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=60), st.lists(st.integers(-5, 5), min_size=1, max_size=60))
def test_ks_matches_scipy_with_ties(a: list[int], b: list[int]) -> None:
    d, p = ks_2samp(np.array(a, float), np.array(b, float))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref = scipy_stats.ks_2samp(np.array(a, float), np.array(b, float))
    assert d == pytest.approx(float(ref.statistic), abs=1e-12)
    assert 0.0 <= p <= 1.0
    if not any("Exact calculation unsuccessful" in str(w.message) for w in caught):
        # (where scipy gives up on the exact count it falls back to an approximation: nothing to compare)
        assert _close(p, float(ref.pvalue)), (p, float(ref.pvalue))


def _features(rng: np.random.Generator) -> list[dict]:
    return [{"name": "rm", "reference_sample": sorted(rng.normal(6.3, 0.7, 506).tolist())},
            {"name": "tax", "reference_sample": sorted(rng.normal(408, 168, 506).tolist())}]


def test_monitor_flags_only_the_shifted_feature() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(_features(rng), window=300, min_samples=50)
    rows = np.stack([rng.normal(6.3, 0.7, 300) + 1.0, rng.normal(408, 168, 300)], axis=1)
    monitor.add(rows)
    report = monitor.report()
    flags = {f["feature"]: f["drifted"] for f in report["features"]}
    assert flags == {"rm": True, "tax": False}
    assert report["drifted"] is True and report["n"] == 300


def test_monitor_waits_for_min_samples_and_keeps_a_window() -> None:
    rng = np.random.default_rng(2)
    monitor = DriftMonitor(_features(rng), window=100, min_samples=50)
    monitor.add(np.array([[20.0, 408.0]] * 10))
    assert monitor.report()["drifted"] is False  # too few rows to judge
    monitor.add(np.stack([rng.normal(6.3, 0.7, 250), rng.normal(408, 168, 250)], axis=1))
    assert monitor.window_rows().shape == (100, 2)
    assert monitor.report()["drifted"] is False  # the shifted rows left the window


def test_metrics_count_exactly_what_was_observed() -> None:
    """Deferred and bulk counting give the counts of counting one by one."""
    import bisect

    from edge.metrics import BUCKETS, Metrics, _num
    from edge_helpers import metric

    rng = np.random.default_rng(1)
    m = Metrics(["a", "b"], [0.0, 0.0], [1.0, 1.0])
    seconds = np.concatenate([rng.exponential(0.003, 1500), BUCKETS])  # bucket edges count as <= le
    rows = rng.uniform(-0.5, 1.5, size=(1300, 2))
    course = []  # the server counts its short-path requests with observe_many (route predict_json, 200)
    for i, t in enumerate(seconds.tolist()):
        if i % 3 and i % 7 and i % 2:
            course.append(t)
        else:
            m.observe("predict_json" if i % 3 else "healthz", 200 if i % 7 else 422, t)
        if len(course) == 50:
            m.observe_many("predict_json", 200, course)
            course = []
    m.observe_many("predict_json", 200, course)
    for start in range(0, len(rows), 97):
        m.count_rows(rows[start : start + 97].tolist())
    text = m.render({"model": "x"}, [])
    want = [0] * (len(BUCKETS) + 1)
    for i, t in enumerate(seconds.tolist()):
        if i % 3:
            want[bisect.bisect_left(BUCKETS, t)] += 1
    cumulative = np.cumsum(want).tolist()
    for bound, n in zip(BUCKETS, cumulative):
        assert metric(text, "deploykit_request_duration_seconds_bucket", route="predict_json", le=_num(bound)) == n
    n_ok = sum(1 for i in range(len(seconds)) if i % 3 and i % 7)
    assert metric(text, "deploykit_requests_total", route="predict_json", status="200") == n_ok
    assert metric(text, "deploykit_predictions_total") == len(rows)
    out_a = int(((rows[:, 0] < 0) | (rows[:, 0] > 1)).sum())
    assert metric(text, "deploykit_input_out_of_range_total", feature="a") == out_a


@pytest.mark.parametrize("n1, n2, shift", [(500, 506, 10.0), (500, 506, 3.0), (500, 506, 2.0), (50, 506, 100.0),
                                           (500, 500, 1e6), (1000, 1000, 0.7), (3, 2000, 5.0), (506, 500, 1e9)])
def test_ks_far_shifts_match_scipy(n1: int, n2: int, shift: float) -> None:
    """Far shifts gave OverflowError (math range error) or a p-value of 0 from `1 - inside`; the outside
    count keeps its digits down to scipy's 1e-301."""
    rng = np.random.default_rng(n1 + n2)
    a, b = rng.normal(shift, 1, n1), rng.normal(0, 1, n2)
    d, p = ks_2samp(a, b)
    ref = scipy_stats.ks_2samp(a, b)
    assert d == pytest.approx(float(ref.statistic), abs=1e-12)
    assert float(ref.pvalue) > 0 and abs(p - float(ref.pvalue)) <= 1e-9 * float(ref.pvalue), (p, float(ref.pvalue))


def test_ks_total_separation_is_two_paths() -> None:
    """D = 1: only the two extreme lattice paths reach it, p = 2 / C(n1 + n2, n1)."""
    import math

    d, p = ks_2samp(np.arange(300.0), np.arange(300.0) + 1000)
    assert d == 1.0
    want = math.exp(math.log(2) - (math.lgamma(601) - 2 * math.lgamma(301)))
    assert p == pytest.approx(want, rel=1e-11)


def test_monitor_far_drift_and_memo() -> None:
    """A window far from the training sample is flagged (no exception), and a p-value asked again for the
    same (n, n_reference, statistic) comes from the memo."""
    rng = np.random.default_rng(3)
    monitor = DriftMonitor(_features(rng), window=200, min_samples=50)
    monitor.add(np.stack([rng.normal(1e6, 1, 200), rng.normal(408, 168, 200)], axis=1))
    first = monitor.report()
    assert {f["feature"]: f["drifted"] for f in first["features"]} == {"rm": True, "tax": False}
    rm = first["features"][0]
    assert rm["statistic"] == 1.0 and 0 < rm["p_value"] < 1e-100
    memo = dict(monitor._pmemo)
    monitor.add(monitor.window_rows()[:1])  # the same values again: the same statistics, new window
    assert monitor.cached() is None
    again = monitor.report()
    assert again["features"] == first["features"] and monitor._pmemo == memo


def test_monitor_max_age_serves_the_last_results() -> None:
    rng = np.random.default_rng(4)
    monitor = DriftMonitor(_features(rng), window=100, min_samples=10)
    monitor.add(np.stack([rng.normal(6.3, 0.7, 100), rng.normal(408, 168, 100)], axis=1))
    before = monitor.results()
    monitor.add(np.array([[6.3, 408.0]]))
    assert monitor.cached(max_age=60.0) is before  # a scrape may take results up to max_age old
    assert monitor.cached(max_age=0.0) is None
    assert monitor.results() is not before
