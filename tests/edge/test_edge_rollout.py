"""Canary choice, the rollback monitor, shadow disagreement, output checks, the rollout config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from edge import rollout_config as rc
from edge.errors import EdgeError
from edge.rollout import CanaryChooser, OutputChecker, RollbackMonitor, disagreement, key_point, predicted_class

REGRESSION = {"task": "regression",
              "outputs": [{"name": "medv", "key": "output_0", "dtype": "float32", "shape": [None, 1], "range": [5.0, 50.0]}]}
CLASSIFIER = {"task": "classification",
              "outputs": [{"name": "species", "key": "output_0", "dtype": "float32", "shape": [None, 3], "range": [0.0, 1.0]}]}


def binomial_bounds(n: int, p: float, alpha: float = 1e-6) -> tuple[int, int]:
    """The two-sided 1 - alpha interval of Binomial(n, p) (a fair chooser leaves it once in a million)."""
    return int(stats.binom.ppf(alpha / 2, n, p)), int(stats.binom.isf(alpha / 2, n, p))


# ---------------------------------------------------------------------- canary

@pytest.mark.parametrize("share", [0.01, 0.1, 0.5, 0.9])
def test_keyless_canary_share_is_within_binomial_bounds(share: float) -> None:
    n = 20_000
    for seed in range(5):
        chooser = CanaryChooser(share, seed=seed)
        hits = sum(chooser.canary() for _ in range(n))
        lo, hi = binomial_bounds(n, share)
        assert lo <= hits <= hi, (seed, hits, lo, hi)


@pytest.mark.parametrize("share", [0.05, 0.25])
def test_keyed_canary_share_over_distinct_clients_is_within_binomial_bounds(share: float) -> None:
    n = 20_000
    chooser = CanaryChooser(share, salt="boston")
    hits = sum(chooser.canary(f"client-{i}") for i in range(n))
    lo, hi = binomial_bounds(n, share)
    assert lo <= hits <= hi, (hits, lo, hi)


def test_key_points_are_uniform() -> None:
    points = [key_point(f"user{i}@example.com", "boston") for i in range(20_000)]
    assert all(0.0 <= p < 1.0 for p in points)
    assert stats.kstest(points, "uniform").pvalue > 1e-6


def test_a_key_is_sticky_and_keeps_the_canary_when_the_share_grows() -> None:
    small, large = CanaryChooser(0.1, salt="boston"), CanaryChooser(0.3, salt="boston")
    keys = [f"k{i}" for i in range(2000)]
    first = [small.canary(k) for k in keys]
    assert first == [small.canary(k) for k in keys]  # sticky
    assert all(large.canary(k) for k, on in zip(keys, first) if on)  # monotone in the share
    assert key_point("k1", "boston") != key_point("k1", "iris")  # the salt separates models
    assert key_point(b"k1", "boston") == key_point("k1", "boston")


def test_share_zero_and_one_are_exact() -> None:
    never, always = CanaryChooser(0.0, seed=1), CanaryChooser(1.0, seed=1)
    assert not any(never.canary(k) for k in [None, "", "a", b"b"] * 100)
    assert all(always.canary(k) for k in [None, "", "a", b"b"] * 100)
    assert CanaryChooser(7.0).share == 1.0 and CanaryChooser(-1.0).share == 0.0


# ---------------------------------------------------------------------- rollback

def monitor(lines: list[str], **limits) -> RollbackMonitor:
    config = rc.RollbackConfig(**{"window": 10, "min_requests": 5, "max_error_rate": 0.2,
                                  "max_output_check_failures": None, "max_disagreement": None, **limits})
    return RollbackMonitor("boston", 2, config, log=lines.append, clock=lambda: 1234.5)


def test_rollback_fires_once_on_the_error_rate() -> None:
    lines: list[str] = []
    m = monitor(lines)
    outcomes = [m.record(error=True) for _ in range(4)]  # under min_requests: no verdict yet
    assert outcomes == [None] * 4
    event = m.record(error=False)
    assert event is not None and event.version == 2 and event.at == 1234.5
    assert event.reason == "error rate 0.8 over the limit 0.2 in the last 5 canary requests"
    assert lines == ["deploykit-edge: rollback: model 'boston' canary version 2 taken out: "
                     "error rate 0.8 over the limit 0.2 in the last 5 canary requests"]
    assert [m.record(error=True) for _ in range(20)] == [None] * 20 and m.fired == 1 and len(lines) == 1
    m.reset(3)
    assert m.event is None and m.rates()["requests"] == 0
    assert m.record(error=True) is None


def test_rollback_window_slides() -> None:
    lines: list[str] = []
    m = monitor(lines, max_error_rate=0.45)
    for _ in range(2):
        assert m.record(error=True) is None  # 2 errors early on (2 / 5 when first judged)
    for _ in range(18):
        assert m.record(error=False) is None  # they leave the window of 10
    assert m.rates()["error_rate"] == 0.0
    for _ in range(4):
        assert m.record(error=True) is None  # 4 / 10 is not over 0.45
    event = m.record(error=True)
    assert event is not None and event.reason == "error rate 0.5 over the limit 0.45 in the last 10 canary requests"


def test_rollback_on_output_checks_and_disagreement() -> None:
    lines: list[str] = []
    m = monitor(lines, max_error_rate=None, max_output_check_failures=0.5)
    events = [m.record(error=False, check_failed=True) for _ in range(5)]
    assert events[:4] == [None] * 4
    assert events[4].reason == "output-check failure rate 1 over the limit 0.5 in the last 5 canary requests"
    m = monitor(lines, max_error_rate=None, max_disagreement=0.05)
    for score in (0.0, 0.1, None, 0.02):
        assert m.record(error=False, disagreement=score) is None
    event = m.record(error=False, disagreement=0.2)  # mean of the 4 scored: 0.32 / 4 = 0.08
    assert event is not None and event.reason == ("disagreement with stable 0.08 over the limit 0.05 in the last "
                                                  "5 canary requests")


def test_no_limit_no_rollback() -> None:
    m = monitor([], max_error_rate=None)
    assert all(m.record(error=True, check_failed=True, disagreement=1.0) is None for _ in range(50))


# ---------------------------------------------------------------------- shadow disagreement

def test_regression_disagreement_is_absolute_relative_and_a_range_fraction() -> None:
    live = {"output_0": np.array([[20.0], [10.0], [0.0]])}
    other = {"output_0": np.array([[22.5], [9.0], [0.0]])}
    d = disagreement(REGRESSION, live, other)
    assert d.absolute == 2.5
    assert d.relative == pytest.approx(2.5 / 22.5, rel=1e-15)
    assert d.top1 is None and d.score == 2.5 / 45.0
    one = disagreement(REGRESSION, {"output_0": 23.5}, {"output_0": 23.5})
    assert (one.absolute, one.relative, one.score) == (0.0, 0.0, 0.0)
    assert disagreement(REGRESSION, live, {"output_0": np.zeros((2, 1))}).absolute == math.inf
    assert d.as_dict() == {"absolute": 2.5, "relative": d.relative, "top1": None, "score": d.score}


def test_classifier_disagreement_is_top1() -> None:
    live = {"output_0": np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4], [0.5, 0.4, 0.1]])}
    other = {"output_0": np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.3, 0.3, 0.4], [0.2, 0.7, 0.1]])}
    d = disagreement(CLASSIFIER, live, other)
    assert d.top1 == 0.5 and d.score == 0.5
    assert d.absolute == pytest.approx(0.4, abs=1e-15)
    assert predicted_class(np.array([[0.2], [0.7]])).tolist() == [0, 1]  # one probability per row
    assert predicted_class(np.float32(0.6)).tolist() == [1]


# ---------------------------------------------------------------------- output checks

def test_output_checks() -> None:
    check = OutputChecker(REGRESSION, margin=0.1)  # [5, 50] widened by 4.5 each side
    assert check.bounds == {"output_0": (0.5, 54.5)}
    assert check.check_value(0.5) is None and check.check_value(54.5) is None
    assert check.check_value(54.6) == ("output 'output_0' is 54.6, outside the manifest's range widened by the margin "
                                       "0.1 ([0.5, 54.5])")
    assert check.check_value(float("nan")) == "output 'output_0' is not finite (nan)"
    assert check.check_value(float("-inf")) == "output 'output_0' is not finite (-inf)"
    assert check.check({"output_0": np.array([[20.0], [30.0]])}) is None
    assert check.check({"output_0": np.array([[20.0], [-3.0]])}) == (
        "output 'output_0' is -3, outside the manifest's range widened by the margin 0.1 ([0.5, 54.5])")
    assert check.check({"output_0": np.array([[np.nan], [60.0]])}) == "output 'output_0' is not finite (nan)"
    assert OutputChecker(REGRESSION, margin=0.0).check_value(50.0001) is not None
    assert OutputChecker.error_reason(ValueError("Invoke failed")) == "the interpreter failed: ValueError: Invoke failed"


# ---------------------------------------------------------------------- the config file

EXAMPLE = {"schema_version": 1, "poll_seconds": 0.5, "models": {"boston": {
    "labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.1, "sticky_header": "X-Client-Key"},
    "shadow": {"version": 3, "share": 0.25}, "fallback": 1, "output_check": {"margin": 0.2},
    "rollback": {"window": 100, "min_requests": 20, "max_error_rate": 0.1, "max_output_check_failures": None,
                 "max_disagreement": 0.05},
    "feedback": {"windows": [50, 500], "id_expiry_seconds": 60, "max_ids": 1000}}}}


def test_the_config_file_is_read_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps(EXAMPLE))
    config = rc.load(path)
    m = config.model("boston")
    assert config.poll_seconds == 0.5
    assert (m.labels, m.canary_share, m.sticky_header, m.shadow_version, m.shadow_share, m.fallback, m.output_margin) == (
        {"stable": 1, "canary": 2}, 0.1, "x-client-key", 3, 0.25, 1, 0.2)
    assert m.rollback == rc.RollbackConfig(100, 20, 0.1, None, 0.05)
    assert m.feedback == rc.FeedbackConfig((50, 500), 60, 1000)
    assert config.model("other") == rc.ModelConfig()
    assert rc.parse({"schema_version": 1}).poll_seconds == rc.DEFAULT_POLL_SECONDS == 2.0
    rc.schema()  # a valid JSON Schema
    import jsonschema
    jsonschema.Draft202012Validator.check_schema(rc.schema())


@pytest.mark.parametrize("change, message", [
    (lambda c: c.update(schema_version=2), "rollout.json is invalid at schema_version: 1 was expected"),
    (lambda c: c["models"]["boston"].update(fallback=0),
     "rollout.json is invalid at models/boston/fallback: 0 is less than the minimum of 1"),
    (lambda c: c["models"]["boston"]["shadow"].pop("version"),
     "rollout.json is invalid at models/boston/shadow: 'version' is a required property"),
    (lambda c: c["models"]["boston"].update(colour="red"),
     "rollout.json is invalid at models/boston: Additional properties are not allowed ('colour' was unexpected)"),
    (lambda c: c["models"]["boston"]["rollback"].update(min_requests=101),
     "rollout.json is invalid at models/boston/rollback: min_requests 101 is over the window of 100; make "
     "min_requests at most the window"),
])
def test_a_bad_config_is_one_line(tmp_path: Path, change, message: str) -> None:
    data = json.loads(json.dumps(EXAMPLE))
    change(data)
    path = tmp_path / "rollout.json"
    path.write_text(json.dumps(data))
    with pytest.raises(EdgeError) as err:
        rc.load(path)
    assert str(err.value) == message


def test_config_json_errors(tmp_path: Path) -> None:
    path = tmp_path / "rollout.json"
    path.write_text('{"schema_version": 1, "poll_seconds": NaN}')
    with pytest.raises(EdgeError) as err:
        rc.load(path)
    assert str(err.value) == f"the rollout config {str(path)!r} is not valid JSON (NaN is not a JSON number); fix the file"
    with pytest.raises(EdgeError) as err:
        rc.load(tmp_path / "none.json")
    assert str(err.value).startswith(f"cannot read the rollout config {str(tmp_path / 'none.json')!r} (FileNotFoundError: ")


def test_a_config_that_is_not_a_small_regular_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    """A fifo given as --rollout-config blocked serve's start (and status) for good."""
    import os

    fifo = tmp_path / "rollout.json"
    os.mkfifo(fifo)
    with pytest.raises(EdgeError) as err:
        rc.load(fifo)
    assert str(err.value) == f"the rollout config {str(fifo)!r} is not a regular file; pass a JSON file"
    big = tmp_path / "big.json"
    big.write_text(" " * (rc.MAX_CONFIG_BYTES + 1))
    with pytest.raises(EdgeError) as err:
        rc.load(big)
    assert str(err.value) == f"the rollout config {str(big)!r} is over 1,048,576 bytes; it is a small JSON file"
