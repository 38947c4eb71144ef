"""``Telemetry``: the one owner of what the server counts: request metrics, the input drift window, the
rows queued by the one-row path, the in-flight gauge, and (``serve --workers N``) the snapshots shared
with the other workers.

Writes are cheap: a one-row prediction is a list append (``queue_row``), counted into metrics and drift
in bulk (one numpy conversion) every ``TALLY_EVERY`` rows, before any batch (so the drift window keeps
the rows in arrival order), and before every read. Every read (``state``, ``window_rows``, ``drift``,
``exposition``, ``snapshot``) flushes the queue itself, so what is read is exact; no caller has to.
The in-flight gauge is changed only here (``admit``, ``enter``, ``leave``, ``leave_fast``).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge import workers
from edge.drift import DriftMonitor
from edge.metrics import Metrics, merge_states

#: the route name the one-row path's requests are counted under
FAST_ROUTE = "predict_json"


class Telemetry:
    """Metrics, drift and the queued rows of one server process (see the module's docstring)."""

    TALLY_EVERY = 512
    METRICS_DRIFT_MAX_AGE = 1.0  # seconds: a scrape may see drift results this old (``/drift`` never does)

    def __init__(self, features: Sequence[dict[str, Any]], drift_window: int, shared_dir: Optional[str] = None,
                 log_errors: Callable[[], int] = lambda: 0) -> None:
        names = [f["name"] for f in features]
        self._metrics = Metrics(names, [f["min"] for f in features], [f["max"] for f in features])
        self._drift = DriftMonitor(features, window=drift_window)
        self._rows: list[list[float]] = []  # one-row predictions not yet counted
        self._seconds: list[float] = []  # latencies of one-row-path requests not yet counted
        self._log_errors = log_errors
        self.inflight = 0  # read anywhere; changed only by this class's methods
        self.shared = workers.Shared(shared_dir) if shared_dir else None
        self._timer: Optional[asyncio.TimerHandle] = None

    @property
    def drift_window(self) -> int:
        return self._drift.window

    # ------------------------------------------------------------------ writes

    def admit(self, limit: int) -> bool:
        """Count a request in flight if fewer than ``limit`` are; else count it refused busy, False."""
        if self.inflight >= limit:
            self._metrics.reject_busy()
            return False
        self.inflight += 1
        return True

    def enter(self) -> None:
        """Count a request in flight (the one-row path, which checked the limit itself)."""
        self.inflight += 1

    def leave(self) -> None:
        """A request counted by ``admit`` or ``enter`` is answered."""
        self.inflight -= 1

    def leave_fast(self, seconds: float) -> None:
        """A one-row-path request counted by ``enter`` is answered, in ``seconds`` (counted in bulk)."""
        self.inflight -= 1
        self._seconds.append(seconds)

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request of the general path."""
        self._metrics.observe(route, status, seconds)

    def queue_row(self, row: list[float]) -> None:
        """Count one predicted row (values in feature order, checked): queued, counted in bulk."""
        queue = self._rows
        queue.append(row)
        if len(queue) >= self.TALLY_EVERY:  # the one-row path adds one latency per row: this bounds both
            self._flush()

    def count_rows(self, x: np.ndarray) -> None:
        """Count predicted feature rows ``(n, n_features)``: metrics, out-of-range values, the drift window."""
        self._flush()
        self._metrics.count_rows(x)
        self._drift.add(x)

    def count_predictions(self, n: int) -> None:
        """Count predictions of a model without tabular features."""
        self._metrics.count_predictions(n)

    def _flush(self) -> None:
        rows, self._rows = self._rows, []
        seconds, self._seconds = self._seconds, []
        if rows:
            width = len(rows[0])  # every queued row was checked against the features
            x = np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64, count=len(rows) * width)
            x = x.reshape(len(rows), width)
            self._metrics.count_rows(x)
            self._drift.add(x)
        self._metrics.observe_many(FAST_ROUTE, 200, seconds)

    # ------------------------------------------------------------------ reads (each flushes first)

    def state(self) -> dict[str, Any]:
        """This process's counters as plain data (``Metrics.state``)."""
        self._flush()
        return self._metrics.state(self._log_errors(), self.inflight)

    def window_rows(self) -> np.ndarray:
        """The rows in this process's drift window, oldest first."""
        self._flush()
        return self._drift.window_rows()

    async def _drift_results(self, max_age: float) -> tuple[list, Optional[dict[str, Any]]]:
        """The drift results and, with several workers, their merged metrics state (else None). Computed in
        a worker thread when the window changed (an exact p-value is a lattice-path count: milliseconds per
        feature that must not stall the event loop)."""
        self._flush()
        if self.shared is not None:
            self.snapshot()
            return await asyncio.to_thread(self._merged, max_age)
        results = self._drift.cached(max_age)
        if results is None:
            results = await asyncio.to_thread(self._drift.results, max_age)
        return results, None

    def _merged(self, max_age: float) -> tuple[list, dict[str, Any]]:
        """Every worker's snapshot merged (``edge.workers``): drift of the joint window, summed counters."""
        states, key, rows = workers.merge(self.shared.read_all(), self._drift.window)  # type: ignore[union-attr]
        return self._drift.results(max_age, merged=(key, rows)), merge_states(states)

    async def drift(self) -> dict[str, Any]:
        """The ``GET /drift`` report, of the current window (of every worker's, with several)."""
        return self._drift.report((await self._drift_results(0.0))[0])

    async def exposition(self, info: dict[str, str], extra: Any = None) -> bytes:
        """The ``GET /metrics`` body (every worker's counters summed, with several); ``extra``, a
        ``prometheus_client`` collector (the rollout's, ``edge.rollout_metrics``), adds its families."""
        results, state = await self._drift_results(self.METRICS_DRIFT_MAX_AGE)
        return self._metrics.render(info, [r.as_dict() for r in results], self._log_errors(),
                                    state=state, inflight=self.inflight, extra=extra).encode()

    # ------------------------------------------------------------------ --workers N

    def snapshot(self) -> None:
        """Write this worker's counters and window for the others' scrapes (errors are left for the next)."""
        if self.shared is None:
            return
        state = self.state()
        rows, times = self._drift.window_rows_and_times()
        try:
            self.shared.write(state, rows, times, self._drift.count)
        except OSError:
            pass

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """With several workers: write a snapshot now and every ``workers.SNAPSHOT_SECONDS``."""
        if self.shared is None:
            return
        self.snapshot()
        self._timer = loop.call_later(workers.SNAPSHOT_SECONDS, self.start, loop)

    def stop(self) -> None:
        """Stop the snapshots and write the last one."""
        if self._timer is not None:
            self._timer.cancel()
        self.snapshot()
