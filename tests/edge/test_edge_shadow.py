"""The shadow worker (edge/server/shadow_worker.py) over stand-in versions: the copy is compared on its own
thread, one shadow-log line per prediction id, a full queue drops the copy and counts it in /metrics, and
shutdown finishes what is queued (or counts what it could not)."""

from __future__ import annotations

import csv
import threading
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, generate_latest

from edge.logs import CsvLogs
from edge.rollout_metrics import RolloutCollector
from edge.server.shadow_worker import ShadowWorker
from test_edge_dispatch import ROW, make

SHADOW = {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}}


def exposition(repo, dispatcher) -> str:
    registry = CollectorRegistry()
    registry.register(RolloutCollector(repo, {"boston": dispatcher}))
    return generate_latest(registry).decode()


def gated(repo) -> tuple[threading.Event, threading.Event]:
    """Make the shadow version's predictions wait for ``gate``; ``started`` is set when one is waiting."""
    shadow = repo.models["boston"].versions[2].predictor
    started, gate = threading.Event(), threading.Event()
    plain = shadow.predict_value

    def slow(row: list[float]) -> float:
        started.set()
        gate.wait(10)
        return plain(row)

    shadow.predict_value = slow
    return started, gate


def test_copies_are_compared_on_the_worker_thread_one_log_line_per_id(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path / "models", {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)
    shadow = repo.models["boston"].versions[2].predictor
    threads: list[str] = []
    plain = shadow.predict_value
    shadow.predict_value = lambda row: (threads.append(threading.current_thread().name), plain(row))[1]
    logs = CsvLogs(tmp_path / "logs", ["rm", "age", "b"])
    worker = ShadowWorker(logs)
    one = dispatcher.predict_value(ROW)
    batch = dispatcher.predict({"features": np.array([ROW, ROW, ROW])})
    assert shadow.calls == 0  # nothing ran on the shadow before the copies were handed over
    assert worker.submit(one) and worker.submit(batch)
    assert worker.stop() == 0
    logs.close()
    assert threads == ["deploykit-edge-shadow"]
    assert shadow.calls == 2
    with (tmp_path / "logs" / "shadow.csv").open(newline="") as f:
        lines = [[r["prediction_id"], r["live_version"], r["shadow_version"], r["absolute"], r["relative"],
                  r["top1_differs"]] for r in csv.DictReader(f)]
    assert lines == [[pid, "1", "2", "2.5", "0.2", ""] for pid in one.ids + batch.ids]
    assert len(set(batch.ids)) == 3
    stats = dispatcher.shadow_stats
    assert (stats.compared, stats.dropped, stats.errors, stats.absolute.count, stats.absolute.sum) == (2, 0, 0, 2, 5.0)


def test_a_full_queue_drops_the_copy_and_counts_it_in_metrics(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)
    started, gate = gated(repo)
    worker = ShadowWorker(None, max_queue=2)
    assert worker.submit(dispatcher.predict_value(ROW))
    assert started.wait(10)  # the worker holds the first copy; the queue is empty
    assert worker.submit(dispatcher.predict_value(ROW)) and worker.submit(dispatcher.predict_value(ROW))
    assert not worker.submit(dispatcher.predict_value(ROW))  # two waiting: the fourth is dropped
    text = exposition(repo, dispatcher)
    assert 'deploykit_shadow_dropped_total{model="boston",shadow_version="2"} 1.0' in text.splitlines()
    gate.set()
    assert worker.stop() == 0
    assert (dispatcher.shadow_stats.compared, dispatcher.shadow_stats.dropped) == (3, 1)
    assert not worker.submit(dispatcher.predict_value(ROW))  # stopped: dropped and counted
    assert dispatcher.shadow_stats.dropped == 2


def test_shutdown_counts_the_copies_it_could_not_finish(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)
    started, gate = gated(repo)
    worker = ShadowWorker(None)
    for _ in range(3):
        assert worker.submit(dispatcher.predict_value(ROW))
    assert started.wait(10)
    assert worker.stop(timeout=0.2) == 2  # one is running, two never started
    assert dispatcher.shadow_stats.dropped == 2
    gate.set()


def test_a_failing_shadow_is_counted_never_raised(tmp_path: Path) -> None:
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5, "raise": "boom"}}, SHADOW)
    worker = ShadowWorker(None)
    answer = dispatcher.predict_value(ROW)
    assert answer.outputs == 10.0 and worker.submit(answer)
    assert worker.stop() == 0
    assert (dispatcher.shadow_stats.errors, dispatcher.shadow_stats.compared, worker.failures) == (1, 0, 0)


def test_while_the_queue_is_full_no_copy_is_made_until_it_is_worked_down(tmp_path: Path) -> None:
    """A refused copy sets the worker's ``full``; the dispatcher then makes no copy (one-value and batch
    answers alike), counting each as dropped, until the worker has worked its queue down to a quarter."""
    repo, dispatcher = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)
    started, gate = gated(repo)
    worker = ShadowWorker(None, max_queue=4)
    dispatcher.shadow_gate = worker
    assert worker.submit(dispatcher.predict_value(ROW))
    assert started.wait(10)
    for _ in range(4):
        assert worker.submit(dispatcher.predict_value(ROW))
    assert not worker.full
    assert not worker.submit(dispatcher.predict_value(ROW)) and worker.full  # refused: full from now on
    assert dispatcher.predict_value(ROW).shadow is None
    assert dispatcher.predict({"features": np.array([ROW, ROW])}).shadow is None
    assert dispatcher.shadow_stats.dropped == 3
    gate.set()
    assert worker.stop() == 0
    assert not worker.full and dispatcher.shadow_stats.compared == 5
