"""The shadow version's side of a request: the job that predicts on it and compares, and its statistics.

In the server the dispatcher (``edge.dispatch``) appends each copy to its feed (``edge.shadow_feed``),
tagged with a ``ShadowTarget``, and the shadow's worker process (``edge.shadow_process``) predicts and
compares it with ``compare`` / ``per_row``; the server counts its answers with ``ShadowStats.record_many``.
A dispatcher without a feed (tests, the status command) hands a ``ShadowJob`` back with the live answer
instead: called, it predicts the same input on the shadow version in process, compares the two answers
(``edge.rollout.disagreement``; the one-value path's plain floats through ``disagreement_value``, the same
numbers) and records the comparison in the model's ``ShadowStats`` (``/metrics``). For a batch it also keeps
each row's own disagreement (``ShadowJob.rows``), one shadow-log line per prediction id.

``ShadowStats``' histogram updates hold its lock, so a scrape never sees a histogram's count without its
sum; its ``dropped`` and ``skipped`` are counted without it by the one thread copies are made on.
"""

from __future__ import annotations

import bisect
import math
import threading
from math import isfinite
from typing import Any, Callable, Optional, Sequence

import numpy as np

from edge.rollout import Disagreement, disagreement, disagreement_value

ABS_BUCKETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0, 100.0)
REL_BUCKETS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.05, 0.1, 0.5, 1.0)


class Histogram:
    """Counts of observations at or below each bucket's upper bound (Prometheus' cumulative buckets are
    the running sums of ``counts``), with their sum and count; +Inf is the last bucket."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.count += 1
        self.sum += value if math.isfinite(value) else 0.0

    def cumulative(self) -> list[tuple[float, int]]:
        """``[(upper bound, observations <= it), ..., (inf, count)]``."""
        out, running = [], 0
        for bound, n in zip(self.bounds + (math.inf,), self.counts):
            running += n
            out.append((bound, running))
        return out


class ShadowStats:
    """The shadow version's disagreement with the live answers it copied: requests compared, shadow
    predictions that failed, copies skipped (not made while the server's shadow worker process was behind:
    its CPU budget; at saturation the shadow compares a sampled share), copies dropped (made and lost: the
    socket refused them, the process exited, the shadow version went away before its turn, or the server
    stopped), top-1 differences, and the absolute and relative histograms (one observation per
    request: a batch's largest difference)."""

    def __init__(self, version: Optional[int] = None) -> None:
        self.version = version
        self.compared = 0
        self.errors = 0
        self.dropped = 0
        self.skipped = 0
        self.top1_differs = 0
        self.absolute = Histogram(ABS_BUCKETS)
        self.relative = Histogram(REL_BUCKETS)
        self.last: Optional[Disagreement] = None
        self.lock = threading.Lock()

    def record(self, d: Disagreement) -> None:
        """Count one comparison (``Histogram.observe`` of both differences, written out: once per copy)."""
        absolute, relative = d.absolute, d.relative
        a, r = self.absolute, self.relative
        with self.lock:
            self.compared += 1
            a.counts[bisect.bisect_left(a.bounds, absolute)] += 1
            a.count += 1
            a.sum += absolute if isfinite(absolute) else 0.0
            r.counts[bisect.bisect_left(r.bounds, relative)] += 1
            r.count += 1
            r.sum += relative if isfinite(relative) else 0.0
            if d.top1:
                self.top1_differs += 1
            self.last = d

    def add(self, summary: "Summary") -> None:
        """Count a batch the worker process compared (its ``summarize``d columns) under one hold of the lock."""
        n, errors, a_counts, a_sum, r_counts, r_sum, differs, last = summary
        a, r = self.absolute, self.relative
        with self.lock:
            self.compared += n
            self.errors += errors
            a.counts = [c + k for c, k in zip(a.counts, a_counts)]
            r.counts = [c + k for c, k in zip(r.counts, r_counts)]
            a.count += n
            r.count += n
            a.sum += a_sum
            r.sum += r_sum
            self.top1_differs += differs
            if last is not None:
                self.last = Disagreement(*last)

    def failed(self) -> None:
        with self.lock:
            self.errors += 1

    def drop(self) -> None:
        with self.lock:
            self.dropped += 1


Summary = tuple  # (compared, failed, absolute bucket counts, absolute sum, relative counts, relative sum,
#                   top-1 differences, the last (absolute, relative, top1, score) or None): ``summarize``'s


def summarize(absolute: Sequence[float], relative: Sequence[float], top1: Optional[Sequence[Optional[float]]],
              score: Sequence[float]) -> Summary:
    """A batch of comparisons (columns in the copies' order; ``absolute`` NaN for a failed shadow prediction,
    a value no comparison gives) as ``ShadowStats.add`` counts them: the buckets ``record`` would pick, the
    sums of the finite differences (in order), the top-1 differences. The worker process runs it, so the
    server adds a few numbers per batch instead of two histogram updates per copy."""
    a_counts, r_counts = [0] * (len(ABS_BUCKETS) + 1), [0] * (len(REL_BUCKETS) + 1)
    a_sum = r_sum = 0.0
    n = failed = differs = 0
    last = None
    left = bisect.bisect_left
    for i, a in enumerate(absolute):
        if a != a:
            failed += 1
            continue
        r = relative[i]
        a_counts[left(ABS_BUCKETS, a)] += 1
        r_counts[left(REL_BUCKETS, r)] += 1
        a_sum += a if isfinite(a) else 0.0
        r_sum += r if isfinite(r) else 0.0
        t = None if top1 is None else top1[i]
        if t:
            differs += 1
        n += 1
        last = (a, r, t, score[i])
    return n, failed, a_counts, a_sum, r_counts, r_sum, differs, last


class ShadowTarget:
    """Where a model's copies go while its shadow stays the same: the shadow ``Version``, the live manifest
    (how to compare), the ``ShadowStats`` they are counted in, and how the worker process loads the version
    (the repository's ``loader`` and the model's ``variant``). The dispatcher makes one per change of
    shadow version (``Dispatcher._target``); the server's worker tags the copies with it."""

    __slots__ = ("version", "manifest", "stats", "loader", "variant", "tid")

    def __init__(self, version: Any, manifest: dict[str, Any], stats: ShadowStats, loader: Any,
                 variant: Optional[str]) -> None:
        self.version, self.manifest, self.stats, self.loader, self.variant = version, manifest, stats, loader, variant
        self.tid = 0  # the worker process's tag for it (0: not told yet)


class ShadowJob:
    """Predict one request's input on the shadow version and compare with the live answer; call it once.

    Args:
        shadow: the shadow ``edge.repository.Version``.
        manifest: the live version's manifest (it says how to compare; every version's interface is the same).
        outputs: the live answer: a float (one-value path) or ``{output key: array}``.
        stats: where the comparison is counted.
        row: the one-value path's row (the shadow answers it with ``predict_value``), or None.
        run: else how a version answers the request (``run(version) -> outputs``).

    Calling it returns the request's ``Disagreement`` (None when the shadow failed or was gone: counted
    in ``stats.errors`` / ``stats.dropped``); nothing raises. ``rows()`` is then each row's disagreement.
    The shadow's predictor is taken once: a version that reaches END meanwhile answers this copy still.
    """

    __slots__ = ("shadow", "manifest", "outputs", "stats", "row", "run", "other", "result")

    def __init__(self, shadow: Any, manifest: dict[str, Any], outputs: Any, stats: ShadowStats,
                 row: Optional[Sequence[float]] = None, run: Optional[Callable[[Any], Any]] = None) -> None:
        self.shadow, self.manifest, self.outputs, self.stats, self.row, self.run = shadow, manifest, outputs, stats, row, run
        self.other: Any = None
        self.result: Optional[Disagreement] = None

    def __call__(self) -> Optional[Disagreement]:
        stats = self.stats
        predictor = self.shadow.predictor
        if predictor is None:  # it reached END while the copy waited
            stats.drop()
            return None
        try:
            if self.row is not None:
                other = predictor.predict_value(self.row)
            else:
                shadow = self.shadow
                shadow.acquire()
                try:
                    other = self.run(shadow)  # type: ignore[misc]
                finally:
                    shadow.release()
        except Exception:  # noqa: BLE001 - the shadow's failure is counted, never answered
            stats.failed()
            return None
        d = compare(self.manifest, self.outputs, other)
        stats.record(d)
        self.other, self.result = other, d
        return d

    def rows(self) -> list[Disagreement]:
        """Each row's disagreement once the job ran (the request's own for one row; none if it failed)."""
        if self.result is None:
            return []
        return per_row(self.manifest, self.outputs, self.other, self.result)


def compare(manifest: dict[str, Any], live: Any, other: Any) -> Disagreement:
    """Two versions' answers to the same request (floats on the one-value path, else output dicts)."""
    if isinstance(live, float) and isinstance(other, float):
        return disagreement_value(manifest, live, other)
    return disagreement(manifest, live, other)


def per_row(manifest: dict[str, Any], live: Any, other: Any, whole: Disagreement) -> list[Disagreement]:
    """Each row's disagreement (``whole`` alone for a one-row request or answers of another shape)."""
    if isinstance(live, float) or isinstance(other, float):
        return [whole]
    keys = [o["key"] for o in manifest["outputs"]]
    try:
        a = {k: np.asarray(live[k]) for k in keys}
        b = {k: np.asarray(other[k]) for k in keys}
        n = a[keys[0]].shape[0] if a[keys[0]].ndim else 1
        if n <= 1 or any(a[k].shape != b[k].shape or a[k].shape[:1] != (n,) for k in keys):
            return [whole]
    except (KeyError, TypeError, ValueError):
        return [whole]
    return [disagreement(manifest, {k: v[i:i + 1] for k, v in a.items()}, {k: v[i:i + 1] for k, v in b.items()})
            for i in range(n)]
