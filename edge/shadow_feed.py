"""A model's shadow copies not sent yet: the ``Feed`` the dispatcher (``edge.dispatch``, its ``shadow_sink``)
appends each copy to on the request's path, one tuple, no syscall, no lock; the server's shadow worker
(``edge.server.shadow_worker.ShadowWorker``) sends the batch to its worker process and counts what it
refuses. A copy made on another thread than the worker's (the inference thread) is handed to the event
loop's (``ShadowWorker.elsewhere``), so a batch is only ever touched on one thread."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Optional

from edge.shadow import ShadowTarget

if TYPE_CHECKING:
    from edge.server.shadow_worker import ShadowWorker

_get_ident = threading.get_ident


class Feed:
    """One model's copies not sent yet (the dispatcher's ``shadow_sink``)."""

    __slots__ = ("worker", "items", "jobs", "target")

    def __init__(self, worker: "ShadowWorker") -> None:
        self.worker = worker
        self.items: list[tuple[Any, float, int, str]] = []  # one-value copies: (row, live answer, live version, id)
        self.jobs: list[tuple[Any, Any, int, list[str]]] = []  # other copies: (inputs, live outputs, version, ids)
        self.target: Optional[ShadowTarget] = None

    def value(self, target: ShadowTarget, live: int, row: Any, value: float, pid: str) -> None:
        """A one-value answer's copy (on the request's path; never raises, never waits)."""
        worker = self.worker
        if not self._admit(self.value, target, live, row, value, pid):
            return
        items = self.items
        items.append((row, value, live, pid))
        n = len(items)
        if n == 1 or n >= worker.batch:
            worker.added(self, n)

    def job(self, target: ShadowTarget, live: int, inputs: Any, outputs: Any, ids: list[str]) -> None:
        """Any other answer's copy: ``inputs`` (a batch's ``{input: array}``, or one row for ``outputs`` a
        float) and the live outputs, one shadow-log line per id (never raises, never waits)."""
        worker = self.worker
        if not self._admit(self.job, target, live, inputs, outputs, ids):
            return
        jobs = self.jobs
        jobs.append((inputs, outputs, live, ids))
        worker.added(self, len(jobs) + len(self.items))

    def _admit(self, again: Any, target: ShadowTarget, *copy: Any) -> bool:
        """Whether a copy is added here and now: made on another thread, it is handed to the loop's (``again``
        with the same arguments there); while the worker is behind or closed it is dropped and counted."""
        worker = self.worker
        if _get_ident() != worker.thread:
            worker.elsewhere(again, target, *copy)
            return False
        if worker.behind or worker.closed:
            target.stats.dropped += 1
            return False
        if target is not self.target:
            worker.retarget(self, target)
        return True
