"""The shadow worker (edge/server/shadow_worker.py, edge/shadow_process.py) over stand-in versions: copies
are batched to a separate worker process at the lowest CPU priority and compared there, one shadow-log line
per prediction id; while it is behind no copy is made (counted as skipped); its CPU budget holds; shutdown finishes what was sent (or counts
what it could not); a killed worker process is reported, counted and replaced; a new shadow version is
loaded by the running process."""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest

from prometheus_client import CollectorRegistry, generate_latest

from edge.logs import CsvLogs
from edge.rollout_metrics import RolloutCollector
from edge.repository import Repository
from edge.dispatch import Dispatcher
from edge.server.shadow_worker import ShadowWorker
from test_edge_dispatch import ROW, Stand, fake_repository

SHADOW = {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}}


class Gated(Stand):
    """A stand-in whose answers wait until the file ``gate`` exists (in the worker process), each after
    ``burn`` CPU seconds of work."""

    def __init__(self, value: float, raise_: str, gate: str, burn: float = 0.0) -> None:
        super().__init__(value, raise_)
        self.gate, self.burn = gate, burn

    def predict_value(self, row: list[float]) -> float:
        deadline = time.monotonic() + 30
        while self.gate and not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.01)
        until = time.thread_time() + self.burn
        while time.thread_time() < until:
            pass
        return super().predict_value(row)


def gate_loader(path: Path, variant: Optional[str]) -> tuple[Any, dict]:
    """The stand-in loader (module level: the worker process is handed it by name)."""
    spec = json.loads((path / "fake.json").read_text())
    return Gated(float(spec["value"]), spec.get("raise", ""), spec.get("gate", ""), float(spec.get("burn", 0))), \
        {"passed": True}


def exposition(repo: Repository, dispatcher: Dispatcher) -> str:
    registry = CollectorRegistry()
    registry.register(RolloutCollector(repo, {"boston": dispatcher}))
    return generate_latest(registry).decode()


def make(root: Path, versions: dict[int, dict], model: dict, max_queue: int = ShadowWorker.MAX_QUEUE,
         logs: Any = None, lines: Optional[list[str]] = None,
         cpu_share: float = ShadowWorker.CPU_SHARE) -> tuple[Repository, Dispatcher, ShadowWorker]:
    repo = fake_repository(root, versions, model, gate_loader)
    dispatcher = Dispatcher(repo, "boston", seed=1, log=lambda _: None)
    worker = ShadowWorker(logs, max_queue=max_queue, log=lines.append if lines is not None else None,
                          cpu_share=cpu_share)
    dispatcher.shadow_sink = worker.feed()
    return repo, dispatcher, worker


def test_copies_are_compared_in_the_worker_process_one_log_line_per_id(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path / "logs", ["rm", "age", "b"])
    repo, dispatcher, worker = make(tmp_path / "models", {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW, logs=logs)
    one = dispatcher.predict_value(ROW)
    batch = dispatcher.predict({"features": np.array([ROW, ROW, ROW])})
    assert one.shadow is None and batch.shadow is None  # batched for the worker, no job on the outcome
    assert worker.pid is None and worker.pending() == 2  # nothing sent yet: fewer than a batch, no loop
    assert worker.wait(60)
    pid = worker.pid
    assert pid is not None and pid != os.getpid()
    assert repo.models["boston"].versions[2].predictor.calls == 0  # never predicted in this process
    assert worker.stop() == 0
    logs.close()
    with (tmp_path / "logs" / "shadow.csv").open(newline="") as f:
        lines = [[r["prediction_id"], r["live_version"], r["shadow_version"], r["absolute"], r["relative"],
                  r["top1_differs"]] for r in csv.DictReader(f)]
    assert lines == [[p, "1", "2", "2.5", "0.2", ""] for p in one.ids + batch.ids]
    assert len(set(batch.ids)) == 3
    stats = dispatcher.shadow_stats
    assert (stats.compared, stats.dropped, stats.errors, stats.absolute.count, stats.absolute.sum) == (2, 0, 0, 2, 5.0)
    assert stats.last is not None and stats.last.absolute == 2.5
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}")  # stop ended it


def test_the_worker_process_runs_at_the_lowest_cpu_priority(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYKIT_SHADOW_PRIORITY", raising=False)
    _, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)
    dispatcher.predict_value(ROW)
    assert worker.wait(60)
    assert os.sched_getscheduler(worker.pid) == os.SCHED_IDLE
    assert os.getpriority(os.PRIO_PROCESS, worker.pid) == 19
    assert worker.stop() == 0


def test_while_the_worker_is_behind_no_copy_is_made_until_it_caught_up(tmp_path: Path) -> None:
    """``max_queue`` copies sent and not answered: ``behind`` is set, the dispatcher's copies (one-value and
    batch answers alike) are counted as skipped and never batched, until the worker answered down to a
    quarter; /metrics counts them (skipped: none lost); once stopped a copy is dropped."""
    gate = tmp_path / "gate"
    repo, dispatcher, worker = make(tmp_path / "m", {1: {"value": 10}, 2: {"value": 12.5, "gate": str(gate)}},
                                    SHADOW, max_queue=4)
    assert worker.batch == 1
    for _ in range(4):
        dispatcher.predict_value(ROW)
    assert worker.outstanding == 4 and worker.behind
    assert dispatcher.predict_value(ROW).shadow is None
    assert dispatcher.predict({"features": np.array([ROW, ROW])}).shadow is None
    assert worker.pending() == 4 and (dispatcher.shadow_stats.skipped, dispatcher.shadow_stats.dropped) == (2, 0)
    text = exposition(repo, dispatcher)
    assert 'deploykit_shadow_skipped_total{model="boston",shadow_version="2"} 2.0' in text
    assert 'deploykit_shadow_dropped_total{model="boston",shadow_version="2"} 0.0' in text
    gate.touch()
    assert worker.wait(60)
    assert not worker.behind and dispatcher.shadow_stats.compared == 4
    dispatcher.predict_value(ROW)
    assert worker.wait(60) and dispatcher.shadow_stats.compared == 5
    assert worker.stop() == 0
    dispatcher.predict_value(ROW)  # stopped: dropped and counted
    assert (dispatcher.shadow_stats.skipped, dispatcher.shadow_stats.dropped) == (2, 1)


def test_shutdown_counts_the_copies_it_could_not_finish(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    _, dispatcher, worker = make(tmp_path / "m", {1: {"value": 10}, 2: {"value": 12.5, "gate": str(gate)}}, SHADOW)
    for _ in range(3):
        dispatcher.predict_value(ROW)
    assert worker.pending() == 3
    assert worker.stop(timeout=0.5) == 3  # sent, never answered
    assert (dispatcher.shadow_stats.dropped, dispatcher.shadow_stats.compared) == (3, 0)


def test_a_failing_shadow_is_counted_never_raised(tmp_path: Path) -> None:
    _, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5, "raise": "boom"}}, SHADOW)
    answer = dispatcher.predict_value(ROW)
    assert answer.outputs == 10.0
    assert worker.wait(60) and worker.stop() == 0
    assert (dispatcher.shadow_stats.errors, dispatcher.shadow_stats.compared) == (1, 0)


def test_a_killed_worker_process_is_reported_counted_and_replaced(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    lines: list[str] = []
    repo, dispatcher, worker = make(tmp_path / "m", {1: {"value": 10}, 2: {"value": 12.5, "gate": str(gate)}}, SHADOW,
                                    max_queue=8, lines=lines)
    for _ in range(2):
        assert dispatcher.predict_value(ROW).outputs == 10.0
    worker.flush()
    first = worker.pid
    assert first is not None and worker.outstanding == 2
    os.kill(first, 9)
    assert worker.wait(30)  # it reads the end of the socket: nothing is outstanding any more
    assert (worker.restarts, worker.pid, dispatcher.shadow_stats.dropped) == (1, None, 2)
    assert lines == ["the shadow worker process exited (status -9); 2 copies not compared (counted as dropped); "
                     "a new one starts with the next batch"]
    assert "deploykit_shadow_worker_restarts_total 1.0" in exposition(repo, dispatcher).splitlines()
    gate.touch()
    time.sleep(ShadowWorker.RESTART_SECONDS)
    assert dispatcher.predict_value(ROW).outputs == 10.0  # the live answers never noticed
    assert worker.wait(60)
    assert worker.pid not in (None, first) and dispatcher.shadow_stats.compared == 1
    assert worker.stop() == 0


def test_a_new_shadow_version_is_loaded_by_the_running_worker(tmp_path: Path) -> None:
    repo, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}, 3: {"value": 14}}, SHADOW)
    dispatcher.predict_value(ROW)
    assert worker.wait(60)
    pid, before = worker.pid, dispatcher.shadow_stats
    (tmp_path / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"boston": {
        "labels": {"stable": 1}, "shadow": {"version": 3, "share": 1.0}}}}))
    repo.scan()
    dispatcher.predict_value(ROW)
    dispatcher.predict({"features": np.array([ROW])})
    assert worker.wait(60) and worker.pid == pid
    after = dispatcher.shadow_stats
    assert (before.version, before.compared, before.absolute.sum) == (2, 1, 2.5)
    assert (after.version, after.compared, after.absolute.sum) == (3, 2, 8.0)
    assert worker.stop() == 0


def test_on_a_loop_a_copy_made_on_another_thread_is_sent_and_answered_there(tmp_path: Path) -> None:
    """With an event loop (the server's): a copy made on the inference thread is handed to the loop's thread,
    sent by the batch's timer, and its answer read by the loop's reader."""
    import asyncio

    _, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW)

    async def main() -> None:
        worker.attach(asyncio.get_running_loop())
        answer = await asyncio.to_thread(dispatcher.predict_value, ROW)
        assert answer.outputs == 10.0 and answer.shadow is None
        while dispatcher.shadow_stats.compared < 1:
            await asyncio.sleep(0.02)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert (dispatcher.shadow_stats.compared, dispatcher.shadow_stats.absolute.sum, worker.outstanding) == (1, 2.5, 0)
    assert worker.stop() == 0


def test_a_batch_larger_than_a_datagram_goes_through_a_file_both_ways(tmp_path: Path) -> None:
    logs = CsvLogs(tmp_path / "logs", ["rm", "age", "b"])
    _, dispatcher, worker = make(tmp_path / "m", {1: {"value": 10}, 2: {"value": 12.5}}, SHADOW, logs=logs)
    rows = np.array([ROW] * 5000)
    answer = dispatcher.predict({"features": rows})
    assert worker.wait(60)
    folder = worker._folder
    assert folder is not None and os.listdir(folder) == []  # each file removed by its reader
    assert worker.stop() == 0 and not os.path.exists(folder)
    logs.close()
    with (tmp_path / "logs" / "shadow.csv").open(newline="") as f:
        got = [(r["prediction_id"], r["absolute"]) for r in csv.DictReader(f)]
    assert got == [(pid, "2.5") for pid in answer.ids]
    assert (dispatcher.shadow_stats.compared, dispatcher.shadow_stats.absolute.sum) == (1, 2.5)


def test_a_summarized_batch_counts_as_its_copies_recorded_one_by_one() -> None:
    """``summarize`` (in the worker process) + ``ShadowStats.add`` give the buckets, counts, errors, top-1
    count and (to the last bit here: integers and halves) the sums ``record`` / ``failed`` give per copy."""
    import math

    from edge.rollout import Disagreement
    from edge.shadow import ShadowStats, summarize

    copies = [(0.0, 0.0, 0.0), (2.5, 0.2, 1.0), (math.inf, math.inf, 1.0), None, (1e-3, 1e-3, 0.0), (40.0, 0.5, None)]
    one = ShadowStats(2)
    for c in copies:
        if c is None:
            one.failed()
        else:
            one.record(Disagreement(c[0], c[1], c[2], 0.5))
    cols = [[math.nan if c is None else c[k] for c in copies] for k in range(2)]
    batch = ShadowStats(2)
    batch.add(summarize(cols[0], cols[1], [None if c is None else c[2] for c in copies], [0.5] * len(copies)))
    for s in (one, batch):
        assert s.last == Disagreement(40.0, 0.5, None, 0.5)
    assert [(s.compared, s.errors, s.top1_differs, s.absolute.counts, s.absolute.sum, s.absolute.count,
             s.relative.counts, s.relative.sum) for s in (batch,)] == \
        [(one.compared, one.errors, one.top1_differs, one.absolute.counts, one.absolute.sum, one.absolute.count,
          one.relative.counts, one.relative.sum)]
    assert (batch.compared, batch.errors, batch.top1_differs) == (5, 1, 2)


def test_a_values_batch_is_its_floats_bit_for_bit(tmp_path: Path) -> None:
    """A one-value batch goes as float64 bytes behind ``VALUES``' header (no pickle) and comes out as the same
    rows and live answers, to the last bit; one larger than a datagram goes through a file, the same."""
    from array import array

    from edge.shadow_process import DATAGRAM, VALUES, pack, unpack

    rows = [[1 / 3, -0.0, 5e-324], [1e308, 6.0, 250.0]]
    live = [22.5, 0.1 + 0.2]
    flat = array("d", [x for row in rows for x in row] + live)
    data = VALUES.pack(b"V", 7, 3, 2, 3) + flat.tobytes()
    got = unpack(data)
    assert got == ("values", 7, 3, rows, live)
    assert [str(x) for r in got[3] for x in r] == ["0.3333333333333333", "-0.0", "5e-324", "1e+308", "6.0", "250.0"]
    big = array("d", [0.25] * (DATAGRAM // 8) + [0.5] * 4)  # 3 floats a row, then 4 answers
    datagram = pack(VALUES.pack(b"V", 8, 3, 4, len(big) // 4 - 1) + big.tobytes(), str(tmp_path), "m8")
    assert len(datagram) < 200 and os.listdir(tmp_path) == ["m8"]
    got = unpack(datagram)
    assert got[:3] == ("values", 8, 3) and got[4] == [0.5] * 4 and os.listdir(tmp_path) == []
    assert [len(r) for r in got[3]] == [DATAGRAM // 32] * 4


def test_the_budget_sleeps_in_proportion_to_the_work() -> None:
    """``Budget(share)`` owes ``1 / share - 1`` seconds of sleep per CPU second, paid once 2 ms are owed."""
    from edge.shadow_process import Budget

    quarter = Budget(0.25)
    assert quarter.rest(0.0005) == 0.0  # 1.5 ms owed: not yet
    assert quarter.rest(0.0005) == pytest.approx(0.003)
    assert quarter.rest(0.01) == pytest.approx(0.03)
    assert Budget(1.0).rest(5.0) == 0.0 and Budget(0.5).rest(0.004) == pytest.approx(0.004)


def test_the_worker_process_keeps_to_its_cpu_share(tmp_path: Path) -> None:
    """40 copies of 5 ms of CPU each at a share of a quarter take at least 4 x 200 ms of wall time (one
    core's whole would be 200 ms), and every copy is still compared."""
    _, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5, "burn": 0.005}}, SHADOW, cpu_share=0.25)
    dispatcher.predict_value(ROW)
    assert worker.wait(60)  # started, the version loaded
    began = time.monotonic()
    for _ in range(40):
        dispatcher.predict_value(ROW)
        worker.flush()
    assert worker.wait(60)
    took = time.monotonic() - began
    assert took >= 0.8 * 0.98, took
    assert (dispatcher.shadow_stats.compared, dispatcher.shadow_stats.skipped, dispatcher.shadow_stats.dropped) == (41, 0, 0)
    assert worker.stop() == 0


def test_stop_ends_a_resting_worker_at_once(tmp_path: Path) -> None:
    """A worker resting after a batch (its budget: 0.1 CPU seconds at a share of 1 % owes 10 s of sleep) ends
    on the server's stop by itself, exit status 0: stop waited out the rest (then killed it after 2 s) before."""
    _, dispatcher, worker = make(tmp_path, {1: {"value": 10}, 2: {"value": 12.5, "burn": 0.1}}, SHADOW, cpu_share=0.01)
    dispatcher.predict_value(ROW)
    assert worker.wait(60)
    proc = worker.proc
    assert proc is not None and proc.poll() is None  # resting, not gone
    assert worker.stop() == 0
    assert proc.returncode == 0
