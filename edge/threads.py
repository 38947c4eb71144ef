"""Interpreter threads for a ``Predictor`` built with ``num_threads=None`` ("auto", what ``serve`` does
without ``--threads``): a simple rule, measured on the device at load time.

With 1 thread, one prediction of a batch of one (zeros) is timed, the median of ``TIMED_RUNS`` after a
warm-up. A model under ``AFTER`` (1 ms) keeps 1 thread: a tabular model answers in microseconds and
threads would only add hand-offs. A slower one is timed again with every CPU this process may run on
(``os.sched_getaffinity``), the two counts in turns (one prediction each, ``TIMED_RUNS`` times, so that a
burst of load on a shared device weighs on both), and keeps them only when that is at least 10 % faster
(``GAIN``); on a busy or one-core device it keeps 1. ``Predictor.threads_reason`` says what was measured.
"""

from __future__ import annotations

import os
import statistics
import time
from typing import Any

import numpy as np

TIMED_RUNS = 5
AFTER = 0.001  # seconds a prediction with 1 thread, above which more threads are tried
GAIN = 0.9  # more threads are kept when their time is at most this fraction of the 1-thread time


def cpus() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def zeros(manifest: dict[str, Any]) -> dict[str, np.ndarray]:
    """A batch of one of zeros (fixed dimensions as the manifest's, free ones 1)."""
    return {s["name"]: np.zeros([1] + [1 if d is None else int(d) for d in s["shape"][1:]], dtype=s["dtype"])
            for s in manifest["inputs"]}


def _once(predictor: Any, inputs: dict[str, np.ndarray]) -> float:
    t = time.perf_counter()
    predictor.predict(inputs)
    return time.perf_counter() - t


def time_one(predictor: Any) -> float:
    """The median time of one prediction of a batch of one (zeros) on the calling thread's interpreter.

    Raises:
        EdgeError: the model refuses zeros (an input the manifest's checks refuse).
    """
    inputs = zeros(predictor.manifest)
    predictor.predict(inputs)  # warm-up: the first invoke allocates
    return statistics.median(_once(predictor, inputs) for _ in range(TIMED_RUNS))


def pick(predictor: Any) -> None:
    """Apply the module's rule to a freshly built ``Predictor`` (1 thread so far, its session on this
    thread): sets ``num_threads`` and ``threads_reason`` and leaves this thread the session to keep."""
    n = cpus()
    try:
        one = time_one(predictor)
    except Exception as exc:  # noqa: BLE001 - a load-time measurement, never a reason not to load
        predictor.threads_reason = f"auto: 1 thread (a timed prediction failed: {type(exc).__name__})"
        return
    if one <= AFTER or n < 2:
        why = f"under {AFTER * 1000:g} ms" if one <= AFTER else "1 CPU"
        predictor.threads_reason = f"auto: 1 thread, {one * 1000:.3g} ms a prediction ({why})"
        return
    local = predictor._local
    single = predictor._session()
    predictor.num_threads = n
    local.session = None  # the next session of this thread has the new count
    inputs = zeros(predictor.manifest)
    many = float("inf")
    try:
        several = predictor._session()
        predictor.predict(inputs)  # its warm-up
        ones, manys = [], []
        for _ in range(TIMED_RUNS):
            local.session = single
            ones.append(_once(predictor, inputs))
            local.session = several
            manys.append(_once(predictor, inputs))
        one, many = statistics.median(ones), statistics.median(manys)
    except Exception:  # noqa: BLE001 - as above
        pass
    if many <= one * GAIN:
        local.session = several
        predictor.threads_reason = f"auto: {n} threads, {many * 1000:.3g} ms a prediction (1 thread: {one * 1000:.3g} ms)"
        return
    predictor.num_threads = 1
    local.session = single
    predictor.threads_reason = (f"auto: 1 thread, {one * 1000:.3g} ms a prediction ({n} threads were not "
                                f"{round((1 - GAIN) * 100)} % faster: {many * 1000:.3g} ms)")
