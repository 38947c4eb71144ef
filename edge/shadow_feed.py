"""A model's shadow copies not sent yet: the ``Feed`` the dispatcher (``edge.dispatch``, its ``shadow_sink``)
appends each copy to on the request's path, no syscall, no lock; the server's shadow worker
(``edge.server.shadow_worker.ShadowWorker``) sends the batch to its worker process and counts what it
refuses. A one-value copy is its row's floats appended to one ``array('d')`` (``fromlist``: C, no float
object kept) and its live answer to a list; a batch is sent as those float64s' bytes (no pickling, one
``sendmsg``). The live version and the prediction id are kept only when the server writes a shadow log. A copy made on another thread than the worker's (the inference
thread) is handed to the event loop's (``ShadowWorker.elsewhere``), so a batch is only ever touched on one
thread. While the worker process is behind (its CPU budget, ``edge.shadow_process``) no copy is made: each
is counted as skipped (``ShadowStats.skipped``), so at saturation the shadow compares a sampled share."""

from __future__ import annotations

import threading
from array import array
from typing import TYPE_CHECKING, Any, Optional

from edge.shadow import ShadowTarget

if TYPE_CHECKING:
    from edge.server.shadow_worker import ShadowWorker

_get_ident = threading.get_ident


class Feed:
    """One model's copies not sent yet (the dispatcher's ``shadow_sink``)."""

    __slots__ = ("worker", "floats", "answers", "width", "lives", "ids", "jobs", "target", "sent")

    def __init__(self, worker: "ShadowWorker") -> None:
        self.worker = worker
        self.floats = array("d")  # one-value copies: their rows' floats, one after the other
        self.answers: list[float] = []  # and their live answers
        self.width = -1  # floats per row
        self.lives: list[int] = []  # their live versions and ids: only when the server writes a shadow log
        self.ids: list[str] = []
        self.jobs: list[tuple[Any, Any, int, list[str]]] = []  # other copies: (inputs, live outputs, version, ids)
        self.target: Optional[ShadowTarget] = None
        self.sent = 0  # batches sent (a batch's timer sends only the batch it was set for)

    def value(self, target: ShadowTarget, live: int, row: Any, value: float, pid: str) -> None:
        """A one-value answer's copy (on the request's path; never raises, never waits)."""
        worker = self.worker
        if (_get_ident() != worker.thread or worker.behind or worker.closed or target is not self.target) \
                and not self._admit(self.value, target, live, row, value, pid):  # the usual case checked inline
            return
        floats, answers = self.floats, self.answers
        if len(row) != self.width:  # the first copy (a model's rows all have its width)
            if answers:
                worker.flush_feed(self)
            self.width, floats, answers = len(row), self.floats, self.answers
        try:  # fromlist takes a list of numbers at C speed (and leaves the array as it was on failure)
            if row.__class__ is list:
                floats.fromlist(row)
            else:  # a tuple or an array
                floats.extend(row)
        except (TypeError, ValueError, OverflowError):  # not numbers: never on a checked row
            del floats[len(answers) * self.width:]
            target.stats.dropped += 1
            return
        answers.append(value)
        if worker.logs is not None:
            self.lives.append(live)
            self.ids.append(pid)
        n = len(answers)
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
        worker.added(self, len(jobs) + len(self.answers))

    def pending(self) -> int:
        """Copies batched here, not sent."""
        return len(self.answers) + len(self.jobs)

    def clear(self) -> int:
        """Forget the batched copies (counted as dropped in the target's stats); how many."""
        n = self.pending()
        if n and self.target is not None:
            self.target.stats.dropped += n
        self.floats, self.answers, self.lives, self.ids, self.jobs = array("d"), [], [], [], []
        return n

    def _admit(self, again: Any, target: ShadowTarget, *copy: Any) -> bool:
        """Whether a copy is added here and now: made on another thread, it is handed to the loop's (``again``
        with the same arguments there); while the worker is behind it is skipped, once closed dropped,
        each counted."""
        worker = self.worker
        if _get_ident() != worker.thread:
            worker.elsewhere(again, target, *copy)
            return False
        if worker.behind or worker.closed:
            if worker.closed:
                target.stats.dropped += 1
            else:
                target.stats.skipped += 1
            return False
        if target is not self.target:
            worker.retarget(self, target)
        return True
