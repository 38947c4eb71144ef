"""Input drift: two-sample Kolmogorov-Smirnov per feature, recent window vs the manifest's training sample.

``ks_2samp`` is a numpy port of the two-sided test with the exact p-value (the lattice-path count of
Hodges / Gnedenko-Korolyuk), which is what ``scipy.stats.ks_2samp(method="auto")`` uses for samples up
to 10,000 values; tests compare both. Windows and reference samples here are far below that size.
Beyond it the asymptotic Kolmogorov distribution is used.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

EXACT_MAX_N = 10_000


def _exact_pvalue(n1: int, n2: int, h: int) -> float:
    """P(D >= h / lcm) for samples of n1 and n2 values without ties (two-sided)."""
    g = math.gcd(n1, n2)
    n1g, n2g = n1 // g, n2 // g
    row = np.zeros(n2 + 1)
    row[0] = 1.0  # a virtual row -1 whose cumulative sum gives row 0
    log_scale = 0.0
    for i in range(n1 + 1):
        lo = max((i * n2g - h) // n1g + 1, 0)
        hi = min(-((-(i * n2g + h)) // n1g) - 1, n2)
        new = np.zeros(n2 + 1)
        if lo <= hi:
            new[lo : hi + 1] = np.cumsum(row[lo : hi + 1])
        peak = new.max()
        if peak <= 0:
            return 1.0
        new /= peak
        log_scale += math.log(peak)
        row = new
    log_inside = math.log(row[n2]) + log_scale if row[n2] > 0 else -math.inf
    log_total = math.lgamma(n1 + n2 + 1) - math.lgamma(n1 + 1) - math.lgamma(n2 + 1)
    return float(min(max(-math.expm1(log_inside - log_total), 0.0), 1.0))


def _asymptotic_pvalue(n1: int, n2: int, d: float) -> float:
    """Kolmogorov's limiting distribution, for samples over ``EXACT_MAX_N``."""
    en = n1 * n2 / (n1 + n2)
    z = (math.sqrt(en) + 0.12 + 0.11 / math.sqrt(en)) * d
    if z < 0.27:
        return 1.0
    total = sum((-1) ** (k - 1) * math.exp(-2 * k * k * z * z) for k in range(1, 101))
    return float(min(max(2 * total, 0.0), 1.0))


def ks_2samp(data1: Iterable[float], data2: Iterable[float]) -> tuple[float, float]:
    """Two-sided two-sample KS test: ``(statistic, p_value)``.

    Raises:
        ValueError: a sample is empty.
    """
    a = np.sort(np.asarray(list(data1) if not isinstance(data1, np.ndarray) else data1, dtype=np.float64).ravel())
    b = np.sort(np.asarray(list(data2) if not isinstance(data2, np.ndarray) else data2, dtype=np.float64).ravel())
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        raise ValueError("ks_2samp needs two non-empty samples")
    both = np.concatenate([a, b])
    diff = np.searchsorted(a, both, side="right") / n1 - np.searchsorted(b, both, side="right") / n2
    d = float(max(diff.max(), np.clip(-diff.min(), 0, 1)))
    if max(n1, n2) <= EXACT_MAX_N:
        g = math.gcd(n1, n2)
        lcm = (n1 // g) * n2
        h = int(round(d * lcm))
        d = h / lcm
        if h == 0:
            return d, 1.0
        return d, _exact_pvalue(n1, n2, h)
    return d, _asymptotic_pvalue(n1, n2, d)


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
    ``alpha``. Results are cached until new rows arrive.
    """

    def __init__(self, features: Sequence[dict[str, Any]], window: int = 500, min_samples: int = 50,
                 alpha: float = 0.01) -> None:
        self.names = [f["name"] for f in features]
        self.reference = [np.sort(np.asarray(f.get("reference_sample") or [], dtype=np.float64)) for f in features]
        self.window = max(1, min(int(window), EXACT_MAX_N))
        self.min_samples = min_samples
        self.alpha = alpha
        self._rows = np.zeros((self.window, len(self.names)), dtype=np.float64)
        self._count = 0
        self._lock = threading.Lock()
        self._cache: tuple[int, list[FeatureDrift]] | None = None

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
        self._rows[(first + np.arange(keep.shape[0])) % self.window] = keep
        self._count += n

    def window_rows(self) -> np.ndarray:
        """The rows now in the window (oldest first)."""
        with self._lock:
            n = min(self._count, self.window)
            if self._count <= self.window:
                return self._rows[:n].copy()
            start = self._count % self.window
            return np.concatenate([self._rows[start:], self._rows[:start]])

    def results(self) -> list[FeatureDrift]:
        """KS statistic, p-value and flag per feature for the current window."""
        with self._lock:
            count = self._count
            if self._cache is not None and self._cache[0] == count:
                return self._cache[1]
        rows = self.window_rows()
        out = []
        for i, name in enumerate(self.names):
            ref = self.reference[i]
            if rows.shape[0] == 0 or ref.size == 0:
                out.append(FeatureDrift(name, int(rows.shape[0]), None, None, False))
                continue
            stat, p = ks_2samp(rows[:, i], ref)
            out.append(FeatureDrift(name, int(rows.shape[0]), stat, p, rows.shape[0] >= self.min_samples and p < self.alpha))
        with self._lock:
            self._cache = (count, out)
        return out

    def report(self) -> dict[str, Any]:
        """The JSON answer of ``GET /drift``."""
        results = self.results()
        return {"window": self.window, "n": min(self._count, self.window), "min_samples": self.min_samples,
                "alpha": self.alpha, "drifted": any(r.drifted for r in results),
                "features": [r.as_dict() for r in results]}
