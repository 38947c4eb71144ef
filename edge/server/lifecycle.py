"""The lifecycle of ``EdgeApp`` (a mixin of ``edge.server.app.EdgeApp``): start-up, readiness, the
repository's scans and shutdown.

At start-up (the ASGI lifespan), after the versions were loaded and self-tested by the first scan, one
prediction of a batch of one is timed (the median of ``TIMED_RUNS``); when it takes longer than
``ServeConfig.offload_after``, or the default model takes an image, the app gets its own inference thread
(``edge.server.inference``; one thread, so one interpreter: ``Predictor`` keeps one per thread), else
predictions run inline (``inline``: the fast path may answer). With the thread, a call that is alone and
typically under ``ServeConfig.inline_under`` still runs on the event loop (``edge.server.inference``; seeded with the
faster of the two timings, the loop's and the thread's). A repository (not a single bundle) is scanned
every ``poll_seconds`` and on SIGHUP, off the event loop, one scan at a time; readiness is worked out
again after each. Shutdown stops the scans, the inference thread and the shadow's worker process (it
first answers the copies sent and batched, up to ``SHADOW_DRAIN_SECONDS``) before the logs are closed.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from typing import Any, Optional

import numpy as np

from edge.repository import NotServed, Repository, State
from edge.server.config import ServeConfig
from edge.server.inference import InferenceThread
from edge.server.shadow_worker import ShadowWorker
from edge.telemetry import Telemetry


class Lifecycle:
    """Start-up, readiness, scans and shutdown of ``EdgeApp`` (see the module's docstring)."""

    TIMED_RUNS = 5
    SHADOW_DRAIN_SECONDS = 10.0
    repo: Repository
    config: ServeConfig
    telemetry: Telemetry
    shadows: ShadowWorker
    logs: Any
    ready: bool
    ready_error: str
    inline: bool
    predict_seconds: Optional[float]
    _executor: Optional[InferenceThread]
    _loop: Optional[asyncio.AbstractEventLoop]
    _scan_task: Optional[asyncio.Task]
    _scan_timer: Optional[asyncio.TimerHandle]

    def startup(self) -> None:
        """Work out readiness (the versions were loaded and self-tested by the scan); time one prediction
        to decide whether predictions run inline or on the inference thread."""
        self.update_ready()
        if not self.ready and not self.config.serve_unready:
            return
        self.predict_seconds = self._time_one_prediction()
        if (self.predict_seconds > self.config.offload_after or self.images.offloads()) and self._executor is None:
            self._executor = InferenceThread(self.config.inline_under)
            there = self._executor.call(self._time_one_prediction)  # also loads the thread's own interpreter
            self._executor.typical = min(self.predict_seconds, there)
        self.inline = self.ready and self._executor is None

    def update_ready(self) -> None:
        """Ready when every model has an AVAILABLE version (and, for a single bundle, its self-test passed)."""
        errors = []
        for name, model in sorted(self.repo.models.items()):
            try:
                version = self.repo.resolve(name)
                self.served(name)  # its dispatcher counts from now on (/metrics)
            except NotServed as exc:
                errors.append(str(exc))
                continue
            result = version.selftest or {}
            if not result.get("passed", True):
                errors.append(result.get("error") or "self-test failed: " + "; ".join(result.get("failures", [])))
        self.ready = not errors
        self.ready_error = "; ".join(errors)
        self.inline = self.ready and self._executor is None and self.predict_seconds is not None

    def failed_versions(self) -> list[dict[str, Any]]:
        """Versions whose load failed (END with an error), for ``/readyz``."""
        return [{"model": name, "version": n, "error": v.error}
                for name, model in sorted(self.repo.models.items())
                for n, v in sorted(model.versions.items()) if v.state is State.END and v.error]

    def _time_one_prediction(self) -> float:
        """The median time of one prediction of a batch of one (zeros; the self-test has checked the model);
        0 when the model refuses zeros (then predictions stay inline, as before this was measured)."""
        p = self.p
        inputs = {s["name"]: np.zeros([1] + [1 if d is None else int(d) for d in s["shape"][1:]], dtype=s["dtype"])
                  for s in p.manifest["inputs"]}
        times = []
        try:
            for _ in range(self.TIMED_RUNS):
                t = time.perf_counter()
                p.predict(inputs)
                times.append(time.perf_counter() - t)
        except Exception:  # noqa: BLE001 - a start-up measurement, never a reason not to start
            return 0.0
        return statistics.median(times)

    # ------------------------------------------------------------------ scanning

    def _schedule_scan(self) -> None:
        loop = self._loop
        if loop is None or self.repo.single:
            return
        self._scan_timer = loop.call_later(max(0.05, self.repo.config.poll_seconds), self.scan_soon)

    def scan_soon(self) -> None:
        """Start a scan of the repository now (the poll timer and SIGHUP call this); one at a time."""
        if self._loop is None or (self._scan_task is not None and not self._scan_task.done()):
            return
        if self._scan_timer is not None:
            self._scan_timer.cancel()
        self._scan_task = self._loop.create_task(self._scan())

    async def _scan(self) -> None:
        try:
            changes = await asyncio.to_thread(self.repo.scan)
        except Exception as exc:  # noqa: BLE001 - a failed scan keeps what is served; the next one retries
            changes = [f"the repository scan failed: {type(exc).__name__}: {exc}"]
        for line in changes:
            self._event(line)
        was_ready = self.ready
        self.update_ready()
        if self.ready and not was_ready and self.predict_seconds is None:
            self.startup()
        self._schedule_scan()

    def shutdown(self) -> None:
        """Stop the scans, the metrics, the inference thread and the shadow's worker process (it answers what
        was sent and batched first), then close the logs (fsync) and say on stderr what was written and what
        was lost."""
        if self._scan_timer is not None:
            self._scan_timer.cancel()
        self.telemetry.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        left = self.shadows.stop(self.SHADOW_DRAIN_SECONDS)
        if left:
            self._event(f"{left} shadow cop{'y' if left == 1 else 'ies'} not compared at shutdown (counted as dropped)")
        if self.logs is not None:
            self.logs.close()
            print(f"deploykit-edge: {self.logs.summary()}", file=sys.stderr, flush=True)
