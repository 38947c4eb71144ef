"""Counters and a latency histogram, and their Prometheus text exposition (through ``prometheus_client``).

``Metrics`` counts (in bulk, with numpy); ``edge.exposition.Exposition``, a custom collector, hands the counted
state to ``prometheus_client`` to write (both imported at the first ``render``, not at start-up). The metric
names and values are those of every release so far; the text is ``prometheus_client``'s (a count is written
``60.0``)."""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _num(value: float) -> str:
    """A bucket bound as the ``le`` label has always written it (``1``, not ``1.0``)."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """The server's counters.

    ``observe`` (once per request) only appends to a pending list; the counting is done in bulk, with
    numpy, every ``FLUSH_EVERY`` entries and before every read (``state``, ``render``). So the per-request
    cost stays a list append while ``/metrics`` is exact. Rows are counted in bulk by ``count_rows`` (the
    server's one-row predictions are queued by ``edge.telemetry.Telemetry``). Thread-safe.
    """

    FLUSH_EVERY = 512

    def __init__(self, feature_names: Sequence[str], lo: Sequence[float] = (), hi: Sequence[float] = ()) -> None:
        self.feature_names = list(feature_names)
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.hist: dict[str, list[int]] = defaultdict(lambda: [0] * (len(BUCKETS) + 1))
        self.hist_sum: dict[str, float] = defaultdict(float)
        self.predictions = 0
        self.out_of_range = {name: 0 for name in self.feature_names}
        self.rejected_busy = 0
        self._lo = np.asarray(lo, dtype=np.float64) if len(lo) else None
        self._hi = np.asarray(hi, dtype=np.float64) if len(hi) else None
        self._observed: list[tuple[str, int, float]] = []
        self._lock = threading.Lock()

    def observe(self, route: str, status: int, seconds: float) -> None:
        """Count one finished request (queued; counted in bulk)."""
        self._observed.append((route, status, seconds))
        if len(self._observed) >= self.FLUSH_EVERY:
            self.flush()

    def observe_many(self, route: str, status: int, seconds: Sequence[float]) -> None:
        """Count finished requests of one route and status, as ``observe`` does one by one."""
        if len(seconds):
            with self._lock:
                self.requests[(route, status)] += len(seconds)
                self._histogram(route, seconds)

    def count_rows(self, rows: Sequence[Sequence[float]] | np.ndarray) -> None:
        """Count predicted rows (values in feature order) and their out-of-range values."""
        if not len(rows):
            return
        with self._lock:
            self.predictions += len(rows)
            if self._lo is not None and self._hi is not None:
                x = np.asarray(rows, dtype=np.float64)
                counts = ((x < self._lo) | (x > self._hi)).sum(axis=0).tolist()
                for name, k in zip(self.feature_names, counts):
                    self.out_of_range[name] += int(k)

    def count_predictions(self, n: int) -> None:
        """Count predictions of a model without tabular features (no range to check)."""
        with self._lock:
            self.predictions += n

    def _histogram(self, route: str, seconds: Sequence[float]) -> None:
        """Add latencies to a route's histogram (caller holds the lock)."""
        counts = np.bincount(np.searchsorted(BUCKETS, seconds, side="left"), minlength=len(BUCKETS) + 1)
        hist = self.hist[route]
        for i, k in enumerate(counts.tolist()):
            hist[i] += k
        self.hist_sum[route] += float(sum(seconds))

    def flush(self) -> None:
        """Fold the queued ``observe`` calls into the counters."""
        with self._lock:
            observed, self._observed = self._observed, []
            by_route: dict[str, list[float]] = defaultdict(list)
            for route, status, seconds in observed:
                self.requests[(route, status)] += 1
                by_route[route].append(seconds)
            for route, seconds in by_route.items():
                self._histogram(route, seconds)

    def reject_busy(self) -> None:
        """Count a request answered 503 over the concurrency limit."""
        with self._lock:
            self.rejected_busy += 1

    def state(self, log_errors: int = 0, inflight: int = 0) -> dict[str, Any]:
        """The counters as plain data (JSON-safe): what ``render`` shows, what a worker shares (``edge.workers``)."""
        self.flush()
        with self._lock:
            return {"requests": [[route, status, n] for (route, status), n in sorted(self.requests.items())],
                    "hist": {k: list(v) for k, v in self.hist.items()}, "hist_sum": dict(self.hist_sum),
                    "predictions": self.predictions, "out_of_range": dict(self.out_of_range),
                    "inflight": inflight, "rejected_busy": self.rejected_busy, "log_errors": log_errors}

    def render(self, info: dict[str, str], drift: list[dict[str, Any]], log_errors: int = 0,
               state: dict[str, Any] | None = None, inflight: int = 0, extra: Any = None) -> str:
        """The ``/metrics`` body: this process's counters, or ``state`` (several workers' merged ``state()``),
        written by ``prometheus_client`` from ``edge.exposition.Exposition``."""
        from prometheus_client import CollectorRegistry, generate_latest

        from edge.exposition import Exposition

        state = self.state(log_errors, inflight) if state is None else state
        registry = CollectorRegistry(auto_describe=False)
        registry.register(Exposition(self.feature_names, info, state, drift))
        if extra is not None:
            registry.register(extra)
        return generate_latest(registry).decode("utf-8")


def merge_states(states: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Several workers' ``Metrics.state()`` summed into one (counters and histograms add up; so do the
    in-flight gauges of the workers given)."""
    requests: dict[tuple[str, int], int] = defaultdict(int)
    hist: dict[str, list[int]] = {}
    sums: dict[str, float] = defaultdict(float)
    out_of_range: dict[str, int] = defaultdict(int)
    total = {"predictions": 0, "inflight": 0, "rejected_busy": 0, "log_errors": 0}
    for st in states:
        for route, status, n in st["requests"]:
            requests[(route, status)] += n
        for route, counts in st["hist"].items():
            into = hist.setdefault(route, [0] * len(counts))
            for i, k in enumerate(counts):
                into[i] += k
        for route, v in st["hist_sum"].items():
            sums[route] += v
        for name, k in st["out_of_range"].items():
            out_of_range[name] += k
        for key in total:
            total[key] += st[key]
    return {"requests": [[r, s, n] for (r, s), n in sorted(requests.items())], "hist": hist, "hist_sum": dict(sums),
            "out_of_range": dict(out_of_range), **total}
