"""Dispatch of one model's requests (edge/dispatch.py) over a repository of stand-in versions, then real bundles."""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
from scipy import stats

from edge.errors import EdgeError
from edge.repository import NotServed, Repository
from edge.dispatch import Histogram, DispatchError, Dispatcher

MANIFEST = {"task": "regression", "inputs": [{"name": "features", "dtype": "float32", "shape": [None, 3]}],
            "features": [{"name": n, "input": "features", "index": i, "min": 0.0, "max": 1000.0}
                         for i, n in enumerate(["rm", "age", "b"])],
            "outputs": [{"name": "medv", "key": "output_0", "dtype": "float32", "shape": [None, 1], "range": [5.0, 50.0]}]}


class Stand:
    """A version that answers ``value`` (or raises ``raise_``), for every row."""

    def __init__(self, value: float, raise_: str = "") -> None:
        self.manifest, self.value, self.raise_, self.variant = MANIFEST, value, raise_, "float32"
        self.calls = 0

    def predict_value(self, row: list[float]) -> float:
        self.calls += 1
        if self.raise_:
            raise RuntimeError(self.raise_)
        return float(self.value + row[0] * 0.0)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.calls += 1
        if self.raise_:
            raise RuntimeError(self.raise_)
        x = inputs["features"]
        return {"output_0": np.full((x.shape[0], 1), self.value, dtype=np.float32)}


def loader(path: Path, variant: Optional[str]) -> tuple[Any, dict]:
    spec = json.loads((path / "fake.json").read_text())
    return Stand(float(spec["value"]), spec.get("raise", "")), {"passed": True}


def fake_repository(root: Path, versions: dict[int, dict], model: dict, load: Any = loader) -> Repository:
    """A scanned repository at ``root``: model ``boston`` with a ``fake.json`` per version (``Stand``'s value,
    or what it raises) and ``model`` as its rollout config."""
    for number, spec in versions.items():
        folder = root / "boston" / str(number)
        folder.mkdir(parents=True)
        (folder / "fake.json").write_text(json.dumps(spec))
    (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"boston": model}}))
    repo = Repository(root, loader=load)
    repo.scan()
    return repo


def make(tmp_path: Path, versions: dict[int, dict], model: dict, seed: int = 1,
         lines: Optional[list[str]] = None) -> tuple[Repository, Dispatcher]:
    repo = fake_repository(tmp_path, versions, model)
    return repo, Dispatcher(repo, "boston", seed=seed, log=(lines.append if lines is not None else lambda _: None))


ROW = [6.0, 250.0, 66.5]


def test_default_explicit_and_unknown_routes(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 20}, 3: {"value": 30}}, {"labels": {"stable": 2}})
    assert dispatcher.predict_value(ROW).version == 2
    assert dispatcher.predict_value(ROW, version=3).outputs == 30.0
    assert dispatcher.predict_value(ROW, label="stable").outputs == 20.0
    with pytest.raises(NotServed) as err:
        dispatcher.predict_value(ROW, version=9)
    assert str(err.value) == "version 9 of model 'boston' not found; it has 1 AVAILABLE, 2 AVAILABLE, 3 AVAILABLE"
    with pytest.raises(NotServed) as err:
        Dispatcher(repo, "iris")
    assert str(err.value) == "model 'iris' not found; this server serves 'boston'"


def test_the_canary_share_is_within_binomial_bounds_and_sticky(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 20}},
                     {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.2}})
    n = 5000
    answers = [dispatcher.predict_value(ROW) for _ in range(n)]
    hits = sum(a.version == 2 for a in answers)
    assert all(a.canary == (a.version == 2) for a in answers)
    lo, hi = int(stats.binom.ppf(5e-7, n, 0.2)), int(stats.binom.isf(5e-7, n, 0.2))
    assert lo <= hits <= hi, (hits, lo, hi)
    for key in ("alice", "bob", "carol", "dave"):
        assert len({dispatcher.predict_value(ROW, key=key).version for _ in range(50)}) == 1
    assert sum(dispatcher.stats.answers.values()) == n + 200


def test_a_healthy_canary_answers_on_the_one_value_path_and_is_watched(tmp_path: Path) -> None:
    """Keyless and keyed canary answers that pass the check take the plan's one-value route (never the
    general one); each is counted, remembered for feedback and recorded by the rollback monitor."""
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 20}},
                         {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.3}})

    def general(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the general path answered a one-value request")

    dispatcher._answer = general  # type: ignore[method-assign]
    answers = [dispatcher.predict_value(ROW) for _ in range(300)]
    answers += [dispatcher.predict_value(ROW, key=f"client-{i}") for i in range(300)]
    canary = [a for a in answers if a.canary]
    assert all(a.version == 2 and a.outputs == 20.0 for a in canary) and 60 < len(canary) < 300
    assert all(a.version == 1 and a.outputs == 10.0 for a in answers if not a.canary)
    assert dispatcher.stats.answers == {1: 600 - len(canary), 2: len(canary)}
    assert dispatcher.monitor is not None and dispatcher.monitor.version == 2
    assert dispatcher.monitor.rates() == {"requests": min(len(canary), 200), "error_rate": 0.0,
                                          "output_check_failures": 0.0, "disagreement": 0.0}
    store = dispatcher.store()
    results = store.join_body([{"id": a.ids[0], "truth": 20.0} for a in canary[:3]])
    assert [r.outcome for r in results] == ["joined"] * 3
    assert store.metrics()[2]["all"]["mae"] == 0.0


def test_failover_answers_from_the_fallback_and_says_why(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 1000}, 3: {"value": 0, "raise": "Invoke failed"}},
                     {"labels": {"stable": 2}, "fallback": 1, "output_check": {"margin": 0.1}})
    answer = dispatcher.predict_value(ROW)
    assert (answer.version, answer.outputs, answer.fallback) == (1, 10.0, True)
    assert answer.reason == ("output 'output_0' is 1000, outside the manifest's range widened by the margin 0.1 "
                             "([0.5, 54.5])")
    batch = dispatcher.predict({"features": np.zeros((4, 3))})
    assert batch.version == 1 and batch.fallback and batch.outputs["output_0"].tolist() == [[10.0]] * 4
    assert len(batch.ids) == 4 and len(set(batch.ids)) == 4
    assert dispatcher.stats.fallbacks == 2 and dispatcher.stats.check_failures == {2: 2}
    # a version that was asked for by number gets no fallback: its out-of-range answer is given as it is
    assert dispatcher.predict_value(ROW, version=2).outputs == 1000.0
    with pytest.raises(DispatchError) as err:
        dispatcher.predict_value(ROW, version=3)
    assert (err.value.status, str(err.value)) == (
        500, "version 3 of model 'boston' failed: the interpreter failed: RuntimeError: Invoke failed")
    assert dispatcher.stats.errors == {3: 1}


def test_an_interpreter_error_fails_over_too(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 3: {"value": 0, "raise": "Invoke failed"}},
                     {"labels": {"stable": 3}, "fallback": 1})
    answer = dispatcher.predict_value(ROW)
    assert (answer.version, answer.fallback, answer.reason) == (1, True, "the interpreter failed: RuntimeError: Invoke failed")


def test_without_a_fallback_a_non_finite_answer_is_refused(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 70}}, {"labels": {"stable": 2}})
    assert dispatcher.predict_value(ROW).outputs == 70.0  # out of range but finite: answered, counted
    assert dispatcher.stats.check_failures == {2: 1}
    dispatcher.repo.models["boston"].versions[1].predictor.value = math.inf
    with pytest.raises(DispatchError) as err:
        dispatcher.predict_value(ROW, version=1)
    assert (err.value.status, str(err.value)) == (422, "the model produced a non-finite output for these inputs "
                                                       "(output 'output_0' is not finite (inf)); send values nearer "
                                                       "the training range")


def test_a_failing_canary_is_rolled_back_once(tmp_path: Path) -> None:
    lines: list[str] = []
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 0, "raise": "Invoke failed"}},
                        {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.5}, "fallback": 1,
                         "rollback": {"window": 20, "min_requests": 10, "max_error_rate": 0.2}}, lines=lines)
    answers = [dispatcher.predict_value(ROW) for _ in range(200)]
    canary = [a for a in answers if a.canary]
    assert len(canary) == 10  # the tenth canary request fired the rollback
    assert all(a.version == 1 and a.fallback for a in canary)  # each was answered by the fallback
    assert repo.models["boston"].labels == {"stable": 1}
    assert dispatcher.stats.rollbacks == 1 and len(lines) == 1
    assert lines[0] == ("deploykit-edge: rollback: model 'boston' canary version 2 taken out: error rate 1 over the "
                        "limit 0.2 in the last 10 canary requests")
    assert repo.models["boston"].notes["canary"].startswith("version 2 was rolled back (error rate 1 over")


def test_a_disagreeing_canary_is_rolled_back(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 20}},
                        {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 1.0},
                         "rollback": {"window": 10, "min_requests": 5, "max_disagreement": 0.2}})
    versions = [dispatcher.predict_value(ROW).version for _ in range(8)]
    assert versions == [2] * 5 + [1] * 3  # |20 - 10| / 45 = 0.22 over 0.2 at the fifth
    assert dispatcher.stats.rollback_events[0].reason == (
        "disagreement with stable 0.2222 over the limit 0.2 in the last 5 canary requests")


def test_rows_outside_the_training_range_do_not_count_against_a_canary(tmp_path: Path) -> None:
    """A client probed /versions/N for far rows that only the canary answered out of range, then sent 55 of
    them with a canary-sticky key: "taken out". Such rows no longer count, either way."""
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 1000}},
                            {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 1.0},
                             "rollback": {"window": 20, "min_requests": 10, "max_output_check_failures": 0.2}})
    for version in repo.models["boston"].versions.values():
        version.predictor.manifest = {**MANIFEST, "features": [{**f, "min": 0.0, "max": 700.0} for f in MANIFEST["features"]]}
    for _ in range(30):
        dispatcher.predict_value([-0.44, 2520.0, 612.0])  # outside the range: answered (by the fallback), not counted
    assert repo.models["boston"].labels.get("canary") == 2
    assert dispatcher.monitor is None or dispatcher.monitor.rates()["requests"] == 0
    for _ in range(10):
        dispatcher.predict_value(ROW)  # within it: the canary's failures count
    assert repo.models["boston"].labels.get("canary") is None


@pytest.mark.parametrize("stable_value, rolled_back", [(1000, False), (10, True)])
def test_a_canary_is_blamed_only_for_requests_that_stable_gets_right(tmp_path: Path, stable_value: float,
                                                                     rolled_back: bool) -> None:
    """Any client could roll a canary back with valid rows far outside the training range: both versions
    answer out of range there, and only the canary was counted. Now a canary failure counts only when stable
    passes the same request."""
    repo, dispatcher = make(tmp_path, {1: {"value": stable_value}, 2: {"value": 1000}},
                            {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 1.0},
                             "rollback": {"window": 20, "min_requests": 10, "max_output_check_failures": 0.2}})
    for _ in range(30):
        dispatcher.predict_value(ROW)
    dispatcher.predict({"features": np.zeros((4, 3))})
    assert (repo.models["boston"].labels.get("canary") is None) is rolled_back
    assert dispatcher.stats.rollbacks == int(rolled_back)
    assert dispatcher.monitor.rates()["requests"] == (10 if rolled_back else 0)  # both wrong: not counted


def test_the_shadow_is_compared_off_the_answer(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}},
                        {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}})
    shadow = repo.models["boston"].versions[2].predictor
    answer = dispatcher.predict_value(ROW)
    assert answer.outputs == 10.0 and shadow.calls == 0  # nothing ran on the shadow before the answer
    d = answer.shadow()
    assert (d.absolute, d.relative, d.top1) == (2.5, 2.5 / 12.5, None) and shadow.calls == 1
    batch = dispatcher.predict({"features": np.zeros((3, 3))})
    assert batch.shadow().absolute == 2.5
    s = dispatcher.shadow_stats
    assert (s.version, s.compared, s.errors) == (2, 2, 0)
    assert s.absolute.cumulative()[-1] == (math.inf, 2) and s.absolute.cumulative()[6] == (1.0, 0)
    assert dispatcher.predict_value(ROW, version=1).shadow is None  # an explicit request is not copied


def test_the_shadow_share_is_sampled(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}},
                     {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 0.25}})
    n = 4000
    copied = sum(dispatcher.predict_value(ROW).shadow is not None for _ in range(n))
    lo, hi = int(stats.binom.ppf(5e-7, n, 0.25)), int(stats.binom.isf(5e-7, n, 0.25))
    assert lo <= copied <= hi


def test_ids_join_feedback_per_version(tmp_path: Path) -> None:
    _, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 20}}, {"labels": {"stable": 1}})
    a = dispatcher.predict_value(ROW)
    b = dispatcher.predict_value(ROW, version=2)
    assert dispatcher.feedback.join(a.ids[0], 12.0).outcome == "joined"
    assert dispatcher.feedback.join(b.ids[0], 17.0).outcome == "joined"
    got = dispatcher.feedback.metrics()
    assert got[1]["all"]["mae"] == 2.0 and got[2]["all"]["mae"] == 3.0


def test_histogram_buckets() -> None:
    h = Histogram((1.0, 10.0))
    for v in (0.5, 1.0, 5.0, 50.0, math.inf):
        h.observe(v)
    assert h.cumulative() == [(1.0, 2), (10.0, 3), (math.inf, 5)] and h.count == 5 and h.sum == 56.5


# ---------------------------------------------------------------------- real bundles

def test_real_failover_and_shadow_on_boston(bundle: Path, boston_linear_bundle: Path, tmp_path: Path) -> None:
    """Version 1: the linear model (the fallback); 2: the MLP (stable); 3: the MLP with its manifest's
    output range moved away, so every answer fails the check; 4: the linear model as the shadow."""
    models = tmp_path / "models"
    shutil.copytree(boston_linear_bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    shutil.copytree(bundle, models / "boston" / "3")
    shutil.copytree(boston_linear_bundle, models / "boston" / "4")
    path = models / "boston" / "3" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["outputs"][0]["range"] = [1000.0, 2000.0]
    path.write_text(json.dumps(manifest))
    (models / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"boston": {
        "labels": {"stable": 2}, "fallback": 1, "shadow": {"version": 4, "share": 1.0}}}}))
    repo = Repository(models)
    assert repo.scan() == [f"boston {v}: AVAILABLE" for v in (1, 2, 3, 4)]
    dispatcher = Dispatcher(repo, "boston")
    linear, mlp = repo.models["boston"].versions[1].predictor, repo.models["boston"].versions[2].predictor
    rows = np.asarray(json.loads((bundle / "golden.json").read_text())["inputs"]["features"], dtype=np.float64)
    offline = np.abs(mlp.predict_rows(rows)[:, 0].astype(np.float64) - linear.predict_rows(rows)[:, 0])
    measured = []
    for row in rows.tolist():
        answer = dispatcher.predict_value(row)
        assert answer.version == 2 and answer.outputs == mlp.predict_value(row)
        measured.append(answer.shadow().absolute)
    assert measured == offline.tolist()  # the shadow's disagreement is the offline difference, row by row
    repo.set_label("boston", "stable", 3)
    answer = dispatcher.predict_value(rows[0].tolist())
    assert answer.version == 1 and answer.fallback and answer.outputs == linear.predict_value(rows[0].tolist())
    assert answer.reason.startswith("output 'output_0' is ") and "outside the manifest's range" in answer.reason


def test_real_hot_swap_under_load_drops_and_mixes_nothing(bundle: Path, boston_linear_bundle: Path, tmp_path: Path) -> None:
    """A client thread predicts throughout while version 2 arrives, becomes stable, is moved back and is
    removed: every request is answered, each answer is exactly its version's prediction for its row."""
    import threading
    import time

    from edge.runner import Predictor

    models = tmp_path / "models"
    shutil.copytree(boston_linear_bundle, models / "boston" / "1")
    config = models / "rollout.json"

    def labels(stable: int) -> None:
        config.write_text(json.dumps({"schema_version": 1, "models": {"boston": {"labels": {"stable": stable}}}}))
        st = config.stat()
        os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))

    labels(1)
    repo = Repository(models)
    repo.scan()
    dispatcher = Dispatcher(repo, "boston")
    rows = json.loads((bundle / "golden.json").read_text())["inputs"]["features"]
    expected = {1: [Predictor(boston_linear_bundle).predict_value(r) for r in rows],
                2: [Predictor(bundle).predict_value(r) for r in rows]}
    stop = threading.Event()
    answers: list[tuple[int, int, float]] = []
    failures: list[str] = []

    def client() -> None:
        i = 0
        while not stop.is_set():
            try:
                outcome = dispatcher.predict_value(rows[i % len(rows)])
                answers.append((i % len(rows), outcome.version, outcome.outputs))
            except Exception as exc:  # noqa: BLE001 - counted, asserted empty
                failures.append(repr(exc))
            i += 1

    thread = threading.Thread(target=client)
    thread.start()
    try:
        time.sleep(0.2)
        shutil.copytree(bundle, models / "boston" / "2")
        labels(2)
        assert repo.scan() == ["boston 2: AVAILABLE"]
        time.sleep(0.2)
        labels(1)
        repo.scan()
        time.sleep(0.2)
        shutil.rmtree(models / "boston" / "2")
        assert repo.scan()[0] == "boston 2: UNLOADING (its folder was removed)"
        time.sleep(0.2)
    finally:
        stop.set()
        thread.join()
    assert failures == []
    assert {v for _, v, _ in answers} == {1, 2}
    assert all(value == expected[version][i] for i, version, value in answers)
    assert sum(dispatcher.stats.answers.values()) == len(answers)


def test_batch_check_shortcut_gives_the_checker_s_reason() -> None:
    """``OutputChecker.check`` (outputs whose lowest and highest values are finite and in bounds pass at once)
    says what the element-by-element ``first_failure`` says, for in-range, out-of-range, NaN, infinite and
    integer outputs, and for two outputs whose second fails."""
    from edge.rollout import OutputChecker

    two = {"task": "classification", "outputs": [
        {"name": "p", "key": "output_0", "dtype": "float32", "shape": [None, 3], "range": [0.0, 1.0]},
        {"name": "q", "key": "output_1", "dtype": "float32", "shape": [None, 1], "range": [-1e30, 1e30]}]}
    checker = OutputChecker(two, margin=0.0)
    rng = np.random.default_rng(5)
    seen = set()
    for trial in range(600):
        a = rng.uniform(-0.2 if trial % 3 == 0 else 0.0, 1.0, (int(rng.integers(1, 5)), 3)).astype(np.float32)
        b = rng.uniform(-1e3, 1e3, (a.shape[0], 1)).astype(np.float64 if trial % 2 else np.float32)
        if trial % 5 == 0:
            a.flat[int(rng.integers(0, a.size))] = np.nan
        if trial % 7 == 0:
            b.flat[int(rng.integers(0, b.size))] = -np.inf
        outputs = {"output_0": a, "output_1": b.astype(np.int64) if trial % 11 == 0 else b}
        want = checker.first_failure(outputs)
        assert checker.check(outputs) == want, trial
        seen.add(want is None)
    assert seen == {True, False}
