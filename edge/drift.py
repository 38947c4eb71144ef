"""Input drift: two-sample Kolmogorov-Smirnov per feature, recent window vs the manifest's training sample.

``ks_2samp`` is a numpy port of the two-sided test with the exact p-value (the lattice-path count of
Hodges / Gnedenko-Korolyuk), which is what ``scipy.stats.ks_2samp(method="auto")`` uses for samples up
to 10,000 values; tests compare both, down to p-values of 1e-300 (far shifts). The path count is kept as a
sum of positive terms with a separate scale (see ``_exact_log_pvalue``), so it never overflows. Beyond
10,000 values the asymptotic Kolmogorov distribution is used. Pure numpy (no scipy on the device).
"""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

EXACT_MAX_N = 10_000


@functools.lru_cache(maxsize=8)
def _log_factorials(n: int) -> list[float]:
    """``log(k!)`` for k = 0..n."""
    return [math.lgamma(k + 1.0) for k in range(n + 1)]

def _exact_log_pvalue(n1: int, n2: int, h: int) -> float:
    """``log P(D >= h / lcm(n1, n2))`` for samples of n1 and n2 values without ties (two-sided).

    Counts the lattice paths from (0, 0) to (n1, n2) that leave the band ``|i/n1 - j/n2| < h/lcm`` (the
    "outside" count: no ``1 - inside`` cancellation, so p-values down to 1e-300 keep their digits). Every
    path to a point outside the band has left it: that point's count is the binomial ``C(i+j, j)``. The
    counts are sums of positive terms, kept in one row scaled by ``exp(scale)``; they never exceed the final
    count, so rescaling loses nothing that matters. Exact to ~1e-12 relative (tests compare with scipy).
    """
    if n1 > n2:
        n1, n2 = n2, n1
    g = math.gcd(n1, n2)
    a, b = n2 // g, n1 // g
    lf = _log_factorials(n1 + n2)
    row = np.zeros(n2 + 1)
    hi_prev = min(-((-h) // b) - 1, n2)
    scale = 0.0
    exp = math.exp
    cumsum = np.cumsum
    for i in range(1, n1 + 1):
        lo = max((i * a - h) // b + 1, 0)
        hi = min(-((-(i * a + h)) // b) - 1, n2)
        if lo > hi:
            return 0.0
        seg = row[lo : hi + 1]
        lfi = lf[i - 1]
        for j in range(max(lo, hi_prev + 1), hi + 1):  # newly inside: every path to (i-1, j) had left
            v = lf[i - 1 + j] - lfi - lf[j] - scale
            if v > 600.0:
                seg *= exp(-v) if v < 1400 else 0.0
                scale += v
                v = 0.0
            seg[j - lo] = exp(v)
        if lo > 0:
            v = lf[i + lo - 1] - lf[i] - lf[lo - 1] - scale
            if v > 600.0:
                seg *= exp(-v) if v < 1400 else 0.0
                scale += v
                v = 0.0
            cumsum(seg, out=seg)
            seg += exp(v)
        else:
            cumsum(seg, out=seg)
        peak = seg[-1]
        if peak > 1e250:
            seg /= peak
            scale += math.log(peak)
        hi_prev = hi
    last = row[n2]
    if last <= 0:
        return -math.inf
    return min(math.log(last) + scale - (lf[n1 + n2] - lf[n1] - lf[n2]), 0.0)


def _asymptotic_pvalue(n1: int, n2: int, d: float) -> float:
    """Kolmogorov's limiting distribution, for samples over ``EXACT_MAX_N``."""
    en = n1 * n2 / (n1 + n2)
    z = (math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * d
    if z < 0.27:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * z * z) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def _statistic(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sided KS statistic of two sorted samples."""
    both = np.concatenate([a, b])
    diff = np.searchsorted(a, both, side="right") / a.size - np.searchsorted(b, both, side="right") / b.size
    return float(max(diff.max(), np.clip(-diff.min(), 0, 1)))


def _pvalue(n1: int, n2: int, d: float) -> tuple[float, float]:
    """``(d, p)``: the statistic rounded to the lattice of the exact test and its p-value."""
    if max(n1, n2) > EXACT_MAX_N:
        return d, _asymptotic_pvalue(n1, n2, d)
    g = math.gcd(n1, n2)
    lcm = (n1 // g) * n2
    h = int(round(d * lcm))
    if h == 0:
        return 0.0, 1.0
    return h / lcm, math.exp(_exact_log_pvalue(n1, n2, h))


def ks_2samp(data1: Iterable[float], data2: Iterable[float]) -> tuple[float, float]:
    """Two-sided two-sample KS test: ``(statistic, p_value)``, as ``scipy.stats.ks_2samp`` (method "auto").

    Raises:
        ValueError: a sample is empty.
    """
    a = np.sort(np.asarray(list(data1) if not isinstance(data1, np.ndarray) else data1, dtype=np.float64).ravel())
    b = np.sort(np.asarray(list(data2) if not isinstance(data2, np.ndarray) else data2, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    return _pvalue(a.size, b.size, _statistic(a, b))


@dataclass
class FeatureDrift:
    """The drift result of one feature."""

    name: str
    n: int
    statistic: float | None
    p_value: float | None
    drifted: bool

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.name, "n": self.n, "statistic": self.statistic, "p_value": self.p_value,
                "drifted": self.drifted}


class DriftMonitor:
    """Keeps the last ``window`` input rows and tests each feature against its reference sample.

    A feature is flagged when at least ``min_samples`` rows are in the window and the p-value is below
    ``alpha``. Results are cached until new rows arrive; ``results(max_age)`` may also serve results up to
    ``max_age`` seconds old. An exact p-value costs milliseconds (a lattice-path count), but it depends only
    on ``(n, n_reference, statistic)``, and the statistic of a window that moves by a row at a time takes few
    values: p-values are remembered (up to ``PVALUE_MEMO`` of them). Thread-safe: the server computes the
    results in a worker thread, off its event loop.
    """

    PVALUE_MEMO = 4096

    def __init__(self, features: Sequence[dict[str, Any]], window: int = 500, min_samples: int = 50,
                 alpha: float = 0.01) -> None:
        self.names = [f["name"] for f in features]
        self.reference = [np.sort(np.asarray(f.get("reference_sample") or [], dtype=np.float64)) for f in features]
        self.window = max(1, min(int(window), EXACT_MAX_N))
        self.min_samples = min_samples
        self.alpha = alpha
        self._rows = np.zeros((self.window, len(self.names)), dtype=np.float64)
        self._times = np.zeros(self.window, dtype=np.float64)  # time.monotonic() of each row's arrival (in bulk)
        self._count = 0
        self._lock = threading.Lock()
        self._compute_lock = threading.Lock()
        self._cache: tuple[int, float, list[FeatureDrift]] | None = None
        self._pmemo: dict[tuple[int, int, int], tuple[float, float]] = {}

    def add(self, rows: np.ndarray) -> None:
        """Add rows (n, n_features) in feature order."""
        rows = np.asarray(rows, dtype=np.float64).reshape(-1, len(self.names))
        with self._lock:
            self._insert(rows)

    def _insert(self, rows: np.ndarray) -> None:
        """Write rows into the ring (caller holds the lock); only the last ``window`` can stay."""
        n = rows.shape[0]
        keep = rows[-self.window :]
        first = self._count + n - keep.shape[0]
        index = (first + np.arange(keep.shape[0])) % self.window
        self._rows[index] = keep
        self._times[index] = time.monotonic()
        self._count += n

    @property
    def count(self) -> int:
        """Rows added so far."""
        return self._count

    def window_rows(self) -> np.ndarray:
        """The rows now in the window (oldest first)."""
        return self.window_rows_and_times()[0]

    def window_rows_and_times(self) -> tuple[np.ndarray, np.ndarray]:
        """The rows now in the window (oldest first) and their arrival times (``time.monotonic()``)."""
        with self._lock:
            n = min(self._count, self.window)
            if self._count <= self.window:
                return self._rows[:n].copy(), self._times[:n].copy()
            start = self._count % self.window
            return (np.concatenate([self._rows[start:], self._rows[:start]]),
                    np.concatenate([self._times[start:], self._times[:start]]))

    def cached(self, max_age: float = 0.0, key: Any = None) -> list[FeatureDrift] | None:
        """The cached results if they are of the current window (or of ``key``, a merged window's) or at most
        ``max_age`` seconds old."""
        cache = self._cache
        key = self._count if key is None else key
        if cache is not None and (cache[0] == key or time.monotonic() - cache[1] <= max_age):
            return cache[2]
        return None

    def results(self, max_age: float = 0.0, merged: tuple[Any, np.ndarray] | None = None) -> list[FeatureDrift]:
        """KS statistic, p-value and flag per feature for the current window (see ``cached``), or for
        ``merged``: ``(key, rows)``, the window of several workers (``edge.workers``)."""
        key = None if merged is None else merged[0]
        hit = self.cached(max_age, key)
        if hit is not None:
            return hit
        with self._compute_lock:  # one computation at a time; a second caller takes the first's result
            hit = self.cached(max_age, key)
            if hit is not None:
                return hit
            with self._lock:
                count = self._count if merged is None else key
            rows = np.sort(self.window_rows() if merged is None else merged[1], axis=0)
            n = int(rows.shape[0])
            out = []
            for i, name in enumerate(self.names):
                ref = self.reference[i]
                if n == 0 or ref.size == 0:
                    out.append(FeatureDrift(name, n, None, None, False))
                    continue
                stat, p = self._memo_pvalue(n, ref.size, _statistic(rows[:, i], ref))
                out.append(FeatureDrift(name, n, stat, p, n >= self.min_samples and p < self.alpha))
            self._cache = (count, time.monotonic(), out)
            return out

    def _memo_pvalue(self, n1: int, n2: int, d: float) -> tuple[float, float]:
        g = math.gcd(n1, n2)
        key = (n1, n2, round(d * (n1 // g) * n2))
        hit = self._pmemo.get(key)
        if hit is None:
            if len(self._pmemo) >= self.PVALUE_MEMO:
                self._pmemo.clear()
            hit = self._pmemo[key] = _pvalue(n1, n2, d)
        return hit

    def report(self, results: list[FeatureDrift] | None = None) -> dict[str, Any]:
        """The JSON answer of ``GET /drift`` (for ``results``, default the current window's)."""
        results = self.results() if results is None else results
        return {"window": self.window, "n": results[0].n if results else min(self._count, self.window),
                "min_samples": self.min_samples, "alpha": self.alpha, "drifted": any(r.drifted for r in results),
                "features": [r.as_dict() for r in results]}
