"""The server's shadow worker: one thread that runs the shadow jobs (``edge.shadow.ShadowJob``), so that
the shadow's prediction and comparison never run on the event loop or the inference thread, and the
caller's answer never waits for them.

* ``submit`` (event loop, after the answer is sent) puts the outcome on a bounded queue
  (``MAX_QUEUE`` copies). When the queue is full the copy is dropped and counted
  (``deploykit_shadow_dropped_total`` in ``/metrics``): a shadow never slows the live traffic down, it
  compares fewer requests instead.
* The thread (started at the first copy, one per server process) runs each job, then writes one
  shadow-log line per prediction id (``shadow.csv``; a batch's lines each carry that row's disagreement).
  The shadow version's interpreter on this thread is its own (``Predictor`` keeps one per thread). It
  shares the process (and the GIL) with the event loop, so its work is budgeted: while copies wait, after
  each job it sleeps for ``(1 / GIL_SHARE - 1)`` times the CPU time the job took, which holds it to
  ``GIL_SHARE`` (5 %) of the process's time when the server is saturated (the callers lose at most that)
  and costs nothing below saturation, where the queue empties between copies and every copy is compared.
  At saturation it falls behind and drops copies (counted): it compares fewer requests rather than slow
  the answers down. (Without the budget, letting go of the GIL after each job, the shadowed server
  answered 0.65 of the single server's requests/s at 1.65x its p99 on the idle 2-core bench machine.)
* ``stop`` (the server's shutdown) lets the thread finish what is queued, up to ``timeout`` seconds, then
  stops it; the copies it could not run are counted as dropped. The logs are closed after it, so no
  compared line is lost beyond the logs' own rule (at most the last unflushed line): each line is
  written when its copy is compared. A server killed outright (``kill -9``) loses the copies still
  queued, never compared and so never logged; the answers' own lines were written before they left.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any, Optional

from edge.server.messages import utc_now

_STOP = object()


class ShadowWorker:
    """See the module's docstring.

    Args:
        logs: the ``edge.logs.CsvLogs`` (``--log-dir``) the shadow lines go to, or None.
        max_queue: the most copies waiting; more are dropped (and counted).
    """

    MAX_QUEUE = 1024
    GIL_SHARE = 0.05  # the most of the process's time the shadow takes while copies wait

    def __init__(self, logs: Any = None, max_queue: int = MAX_QUEUE) -> None:
        self.logs = logs
        self.max_queue = max_queue
        self.done = 0
        self.failures = 0
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._start_lock = threading.Lock()
        # set when a copy finds the queue full, cleared once the worker has worked it down to a quarter: the
        # dispatchers read it before making a copy (edge.dispatch.Dispatcher.shadow_gate)
        self.full = False

    def submit(self, outcome: Any) -> bool:
        """Queue an outcome's shadow job (``outcome.shadow``); False (and counted as dropped) when the queue
        is full or the worker has stopped."""
        job = outcome.shadow
        if self._closed or self._queue.qsize() >= self.max_queue:
            self.full = True
            job.stats.drop()
            return False
        if self._thread is None:
            self._start()
        self._queue.put(outcome)
        return True

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._main, name="deploykit-edge-shadow", daemon=True)
                thread.start()
                self._thread = thread

    def _main(self) -> None:
        get, waiting, cpu = self._queue.get, self._queue.qsize, time.thread_time
        rest = 1.0 / self.GIL_SHARE - 1.0
        while True:
            outcome = get()
            if outcome is _STOP:
                return
            start = cpu()
            try:
                self.run(outcome)
            except Exception as exc:  # noqa: BLE001 - a bad job must not stop the worker
                self.failures += 1
                print(f"deploykit-edge: a shadow job failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            left = waiting()
            if left:  # copies are queued up: the server is busy; keep to GIL_SHARE of its time
                time.sleep((cpu() - start) * rest)
            if self.full and left <= self.max_queue // 4:
                self.full = False

    def run(self, outcome: Any) -> None:
        """Run one outcome's shadow job and write its shadow-log lines (one per prediction id)."""
        job = outcome.shadow
        d = job()
        self.done += 1
        logs = self.logs
        if d is None or logs is None:
            return
        now = utc_now()
        rows = job.rows()
        if len(rows) != len(outcome.ids):
            rows = [d] * len(outcome.ids)
        for pid, r in zip(outcome.ids, rows):
            logs.shadow([now, pid, outcome.version, job.shadow.number, r.absolute, r.relative,
                         "" if r.top1 is None else r.top1])

    def pending(self) -> int:
        """Copies waiting in the queue."""
        return self._queue.qsize()

    def stop(self, timeout: float = 10.0) -> int:
        """Finish the queued copies (up to ``timeout`` s), stop the thread; returns the copies left undone
        (counted as dropped). Later ``submit`` calls drop their copy."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)
        left = 0
        while True:
            try:
                outcome = self._queue.get_nowait()
            except queue.Empty:
                break
            if outcome is not _STOP:
                outcome.shadow.stats.drop()
                left += 1
        return left
