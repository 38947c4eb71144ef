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
  shares the GIL with the event loop: after ``BURST`` queued jobs in a row (one) it lets go of it
  (``os.sched_yield``), so the loop waits for one job at most (a few microseconds on a tabular model),
  never for a backlog. At saturation the loop holds the GIL most of the time, so the worker falls
  behind and drops copies: it compares fewer requests rather than slow the answers down.
* ``stop`` (the server's shutdown) lets the thread finish what is queued, up to ``timeout`` seconds, then
  stops it; the copies it could not run are counted as dropped. The logs are closed after it, so no
  compared line is lost beyond the logs' own rule (at most the last unflushed line): each line is
  written when its copy is compared. A server killed outright (``kill -9``) loses the copies still
  queued, never compared and so never logged; the answers' own lines were written before they left.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from typing import Any, Optional

from edge.server.messages import utc_now

_STOP = object()
_yield = getattr(os, "sched_yield", lambda: time.sleep(0))  # releases the GIL and the CPU


class ShadowWorker:
    """See the module's docstring.

    Args:
        logs: the ``edge.logs.CsvLogs`` (``--log-dir``) the shadow lines go to, or None.
        max_queue: the most copies waiting; more are dropped (and counted).
    """

    MAX_QUEUE = 1024
    # Jobs run in a row, while more wait, before the GIL is let go. 1 puts the callers first: at saturation
    # the worker runs in the loop's gaps and drops what it cannot compare (a 5 s wrk run on a loaded 2-core
    # machine: 64 % of the copies dropped, the shadow server's p99 0.99 of the single server's in the
    # bench); 16 compared every copy in the same test, and the shadow server answered about 20 % fewer
    # requests per second than the single one (bench run 2, README).
    BURST = 1

    def __init__(self, logs: Any = None, max_queue: int = MAX_QUEUE) -> None:
        self.logs = logs
        self.max_queue = max_queue
        self.done = 0
        self.failures = 0
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()
        self._thread: Optional[threading.Thread] = None
        self._closed = False
        self._start_lock = threading.Lock()

    def submit(self, outcome: Any) -> bool:
        """Queue an outcome's shadow job (``outcome.shadow``); False (and counted as dropped) when the queue
        is full or the worker has stopped."""
        job = outcome.shadow
        if self._closed or self._queue.qsize() >= self.max_queue:
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
        get, waiting = self._queue.get, self._queue.qsize
        burst = 0
        while True:
            outcome = get()
            if outcome is _STOP:
                return
            try:
                self.run(outcome)
            except Exception as exc:  # noqa: BLE001 - a bad job must not stop the worker
                self.failures += 1
                print(f"deploykit-edge: a shadow job failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            if not waiting():
                burst = 0  # the next get() blocks, and lets go of the GIL
                continue
            burst += 1
            if burst >= self.BURST:
                # get() keeps the GIL while copies wait: after BURST jobs in a row let go of it, so the
                # event loop waits for at most BURST jobs, never for a whole backlog.
                burst = 0
                _yield()

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
