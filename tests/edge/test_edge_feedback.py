"""Ground truth joined to predictions by id, and the online metrics (edge/feedback.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edge.feedback import MAX_ITEMS, FeedbackStore, PredictionIds
from edge.inputs import InputError
from edge.rollout_config import FeedbackConfig


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ids_are_unique_recognised_and_not_guessable() -> None:
    ids = PredictionIds("abcd0123")
    issued = [ids.new() for _ in range(1000)]
    pids = [pid for pid, _ in issued]
    assert len(set(pids)) == 1000 and pids[0].startswith("abcd01231") and len(pids[0]) == 8 + 1 + 8
    assert ids.split(pids[0]) == (1, issued[0][1]) and ids.split(pids[-1]) == (1000, issued[-1][1])
    assert len({value for _, value in issued}) > 990  # 32 random bits each
    assert ids.split("abcd0123" + "3e9" + "00000000") is None  # never issued (1001)
    for bad in ("abcd01230" + "00000000", "ffff00001" + "00000000", "abcd0123zz" + "00000000", "abcd01231", "abcd0123"):
        assert ids.split(bad) is None
    assert PredictionIds().token != PredictionIds().token


def test_an_id_made_by_counting_is_unknown() -> None:
    """Ids were the token and a counter: anyone could post truth to the next ids and the real owner got a 409."""
    store = FeedbackStore("regression")
    first = store.remember(1, 5.0)
    second = store.remember(1, 6.0)
    guessed = first[:8] + "2" + first[-8:]  # the next counter, with the tag of the id one holds
    result = store.join(guessed, 1.0)
    assert (result.status, result.outcome) == (404, "unknown")
    assert store.join(second, 6.5).outcome == "joined"  # the owner's truth is taken


def test_regression_metrics_equal_the_offline_ones() -> None:
    rng = np.random.default_rng(7)
    pred, truth = rng.normal(22, 9, 700), rng.normal(22, 9, 700)
    store = FeedbackStore("regression", FeedbackConfig(windows=(100, 500)))
    ids = [store.remember(2, float(p)) for p in pred]
    results = [store.join(i, float(t)) for i, t in zip(ids, truth)]
    assert {r.outcome for r in results} == {"joined"}
    got = store.metrics()[2]
    err = pred - truth
    for key, part in (("all", err), ("last_100", err[-100:]), ("last_500", err[-500:])):
        assert got[key]["joined"] == part.size
        assert got[key]["mae"] == pytest.approx(float(np.mean(np.abs(part))), rel=1e-12)
        assert got[key]["rmse"] == pytest.approx(float(np.sqrt(np.mean(part ** 2))), rel=1e-12)


def test_a_retry_is_not_counted_twice_and_another_truth_conflicts() -> None:
    store = FeedbackStore("regression")
    pid = store.remember(1, [23.5])
    assert store.join(pid, 20.0).as_dict() == {"id": pid, "status": 200, "outcome": "joined", "message": ""}
    again = store.join(pid, 20.0)
    assert (again.status, again.outcome, again.message) == (200, "duplicate",
                                                            f"prediction {pid} was already joined; not counted again")
    other = store.join(pid, 21.0)
    assert (other.status, other.outcome, other.message) == (
        409, "conflict", f"prediction {pid} was already joined with another truth; the first is kept")
    assert store.metrics()[1]["all"] == {"joined": 1, "mae": 3.5, "rmse": 3.5}


def test_unknown_and_expired_ids_answer_404_with_the_reason() -> None:
    clock = Clock()
    store = FeedbackStore("regression", FeedbackConfig(windows=(10,), id_expiry_seconds=60, max_ids=3), clock=clock)
    first = store.remember(1, 10.0)
    kept = [store.remember(1, 10.0) for _ in range(3)]  # the first is pushed out by the fourth
    result = store.join(first, 9.0)
    assert (result.status, result.outcome, result.message) == (
        404, "expired", f"prediction {first} has expired (this server keeps the last 3 predictions for 60 s)")
    clock.now += 61
    assert store.join(kept[0], 9.0).outcome == "expired"
    unknown = store.join("0000000042", 9.0)
    assert (unknown.status, unknown.outcome, unknown.message) == (
        404, "unknown", "prediction 0000000042 is unknown (not issued by this server since it started)")
    bad = store.join(42, 9.0)
    assert (bad.status, bad.outcome, bad.message) == (422, "invalid", "id must be the prediction's id, a string")
    assert store.metrics() == {}


def test_truths_of_the_wrong_kind_are_refused() -> None:
    store = FeedbackStore("regression")
    one, two = store.remember(1, 5.0), store.remember(1, [5.0, 6.0])
    cases = [(one, "5", "truth must be a number or a list of 1 numbers, got 5"),
             (one, True, "truth must be a number or a list of 1 numbers, got True"),
             (one, [1.0, 2.0], "truth has 2 values, the prediction has 1"),
             (two, [1.0, float("inf")], "truth must be finite"),
             (one, 1e300, "truth must be within float32's range (±3.402823e+38)"),  # its square would overflow
             (two, [1.0, -3.5e38], "truth must be within float32's range (±3.402823e+38)")]
    for pid, truth, message in cases:
        result = store.join(pid, truth)
        assert (result.status, result.outcome, result.message) == (422, "invalid", message)
    assert store.join(two, [4.0, 8.0]).outcome == "joined"
    assert store.metrics()[1]["all"] == {"joined": 1, "mae": 1.5, "rmse": math.sqrt(2.5)}
    assert store.join(store.remember(2, 5.0), -3.4e38).outcome == "joined"  # the edge of the range: still finite
    assert all(math.isfinite(v) for v in store.metrics()[2]["all"].values())
    classes = FeedbackStore("classification", classes=3)
    pid = classes.remember(1, [0.1, 0.7, 0.2])
    for truth in (3, -1, 1.0, True):
        assert classes.join(pid, truth).message == f"truth must be a class index from 0 to 2, got {truth}"


def test_classification_accuracy_and_confusion_per_version() -> None:
    store = FeedbackStore("classification", FeedbackConfig(windows=(3,)), classes=3)
    rows = [(1, [0.8, 0.1, 0.1], 0), (1, [0.1, 0.8, 0.1], 1), (1, [0.1, 0.1, 0.8], 1), (1, [0.2, 0.7, 0.1], 1),
            (2, [0.6, 0.3, 0.1], 2)]
    for version, probs, truth in rows:
        assert store.join(store.remember(version, probs), truth).outcome == "joined"
    got = store.metrics()
    assert got[1]["all"] == {"joined": 4, "accuracy": 0.75, "confusion": [[0, 0, 1], [1, 1, 2], [1, 2, 1]]}
    assert got[1]["last_3"] == {"joined": 3, "accuracy": 2 / 3, "confusion": [[1, 1, 2], [1, 2, 1]]}
    assert got[2]["all"] == {"joined": 1, "accuracy": 0.0, "confusion": [[2, 0, 1]]}
    binary = FeedbackStore("classification", classes=2)
    assert binary.join(binary.remember(1, [0.9]), 1).outcome == "joined"
    assert binary.metrics()[1]["all"]["accuracy"] == 1.0


def test_feedback_bodies() -> None:
    store = FeedbackStore("regression")
    a, b = store.remember(1, 1.0), store.remember(1, 2.0)
    results = store.join_body([{"id": a, "truth": 1.5}, {"id": b, "truth": 2.0}, {"id": a, "truth": 1.5}])
    assert [r.outcome for r in results] == ["joined", "joined", "duplicate"]
    assert store.join_body({"id": b, "truth": 2.0})[0].outcome == "duplicate"
    mixed = store.join_body([{"id": a, "truth": 1.5}, 5, {"id": b}])  # in a list, each item answers for itself
    assert [(r.id, r.status, r.outcome, r.message) for r in mixed] == [
        (a, 200, "duplicate", f"prediction {a} was already joined; not counted again"),
        ("", 422, "invalid", 'item 2: feedback must be an object with exactly "id" and "truth"'),
        (b, 422, "invalid", 'item 3: feedback must be an object with exactly "id" and "truth"')]
    for body, status, message in [
        ([], 422, 'the body must be {"id": ..., "truth": ...} or a non-empty list of them'),
        ({"id": a}, 422, 'feedback must be an object with exactly "id" and "truth"'),
        ([{"id": a, "truth": 1}] * (MAX_ITEMS + 1), 413, f"{MAX_ITEMS + 1} feedback items are over the limit of {MAX_ITEMS}"),
    ]:
        with pytest.raises(InputError) as err:
            store.join_body(body)
        assert (err.value.status, str(err.value)) == (status, message)


def test_a_refused_truth_leaves_the_prediction_joinable() -> None:
    store = FeedbackStore("classification", classes=3)
    pid = store.remember(4, np.array([0.1, 0.2, 0.7], dtype=np.float32))
    assert store.join(pid, 5).outcome == "invalid"
    assert store.join(pid, 2).outcome == "joined"
    assert store.metrics()[4]["all"] == {"joined": 1, "accuracy": 1.0, "confusion": [[2, 2, 1]]}


def test_a_full_ring_of_one_value_answers_costs_under_64_bytes_a_prediction() -> None:
    """The ring keeps its columns in typed arrays: 100,000 one-value answers (the default max_ids) cost
    about 6.2 MB (measured with tracemalloc: 5.7 MB before the ids' 4-byte random tags, stop 25; a tuple per
    prediction cost 16.0 MB, which alone put a loaded server over the bench's RSS goal)."""
    import tracemalloc

    tracemalloc.start()
    try:
        store = FeedbackStore("regression", FeedbackConfig())
        for i in range(store.max_ids):
            store.remember(1, 0.5 * i)
        used, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert store.max_ids == 100_000
    assert used / store.max_ids < 64, used
