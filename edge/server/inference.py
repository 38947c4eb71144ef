"""The inference thread of ``EdgeApp``, and when a model call runs on the event loop instead.

``InferenceThread`` is one thread that runs model calls one at a time, in the order given: a call is
queued on a ``queue.SimpleQueue`` and its result handed back to the event loop with
``loop.call_soon_threadsafe`` (one wake-up of the loop per call; ``run_in_executor`` on a one-thread
``ThreadPoolExecutor`` does the same in more steps: a work item, a semaphore, two chained futures). One
thread, so one interpreter: ``edge.runner.Predictor`` keeps one per thread.

A hand-off costs a thread wake-up and a loop wake-up (tens of microseconds on an idle device, up to
milliseconds on a loaded one), more than a small model's whole prediction overhead. So ``run`` predicts on
the event loop instead when the call is alone and cheap:

* the caller says it is alone (``alone()``: no other counted request in flight, asked after the loop has
  had one turn, ``asyncio.sleep(0)``, so that the requests read in the same turn have started and been
  counted), nothing is queued on the thread, and the call is not ``heavy`` (a batch, or a big picture to
  decode first: the caller knows);
* and a call typically costs under ``inline_under`` seconds (``ServeConfig.inline_under``, 2.5 ms): the
  median of the last ``RECENT`` calls' CPU time on the thread that ran them (``time.thread_time``; inline
  or on the thread, ``heavy`` ones left out), seeded with the time measured at start-up. CPU time is what
  the call costs, not how long a loaded device kept it waiting (preempted, or waiting for the GIL): the
  litert and tflite-runtime kernels compute on the calling thread (with more interpreter threads, XNNPACK's
  pool includes it: its share) and so does Pillow, so on an idle device it is about the call's wall time.
  A ``/healthz`` that arrives during an inline call waits for at most that one call; a model that turns
  slow (an input that costs more, a runtime that changed) goes to the thread after a few calls, and back
  when it is cheap again.
"""

from __future__ import annotations

import asyncio
import collections
import queue
import threading
import time
from concurrent.futures import Future
from typing import Any, Callable, Optional, TypeVar

T = TypeVar("T")
_Done = Callable[[Any, Optional[BaseException]], None]
_Job = tuple[Callable[..., Any], tuple[Any, ...], _Done, bool]

NAME = "deploykit-edge-inference"
RECENT = 9  # calls whose median duration is the typical one


def _settle(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    """On the event loop: the awaited future gets the call's result or exception (unless it was cancelled)."""
    if future.cancelled():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


class InferenceThread:
    """One worker thread for model calls, and the choice of inline or queued (see the module's docstring);
    the thread starts on construction. ``inline_under`` 0 sends every call to the thread."""

    def __init__(self, inline_under: float = 0.0, seconds: Optional[float] = None, name: str = NAME) -> None:
        self.inline_under = inline_under
        self._recent: collections.deque[float] = collections.deque(maxlen=RECENT)
        #: a call's typical cost (CPU seconds): the median of the recent ones, or what start-up measured
        self.typical = float("inf") if seconds is None else seconds
        self.queued = 0  # calls handed to the thread and not yet back (changed on the event loop only)
        self.inline_calls = 0
        self.thread_calls = 0
        self._jobs: "queue.SimpleQueue[Optional[_Job]]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name=name, daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        """The thread's name (what ``threading.current_thread().name`` says inside a call)."""
        return self._thread.name

    def _note(self, seconds: float) -> None:
        """One call's CPU seconds (either thread); ``typical`` becomes the median of the recent ones."""
        recent = self._recent
        recent.append(seconds)
        self.typical = sorted(recent)[len(recent) // 2]

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, args, done, timed = job
            start = time.thread_time()
            try:
                result = fn(*args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, who raises it
                done(None, exc)
            else:
                if timed:
                    self._note(time.thread_time() - start)
                done(result, None)
            del job, fn, args, done  # no reference to the last call's inputs while idle

    async def run(self, fn: Callable[..., T], *args: Any, alone: Optional[Callable[[], bool]] = None,
                  heavy: bool = False) -> T:
        """``fn(*args)`` on the event loop when alone and cheap (the module's docstring), else on the thread
        after the calls queued before it.

        Raises:
            Whatever ``fn`` raises.
        """
        if alone is not None and not heavy and self.queued == 0 and self.typical < self.inline_under:
            await asyncio.sleep(0)  # the requests read with this one start, and are counted, first
            if self.queued == 0 and alone():
                self.inline_calls += 1
                start = time.thread_time()
                result = fn(*args)
                self._note(time.thread_time() - start)
                return result
        self.thread_calls += 1
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[T]" = loop.create_future()

        def done(result: Any, error: Optional[BaseException]) -> None:
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop was closed meanwhile: nobody is waiting
                pass

        self.queued += 1
        self._jobs.put((fn, args, done, not heavy))
        try:
            return await future
        finally:
            self.queued -= 1

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the thread, waiting for it here (start-up: no event loop needed; not timed).

        Raises:
            Whatever ``fn`` raises.
        """
        future: "Future[T]" = Future()

        def done(result: Any, error: Optional[BaseException]) -> None:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

        self._jobs.put((fn, args, done, False))
        return future.result()

    def shutdown(self, wait: bool = True) -> None:
        """Stop the thread once the calls queued so far are done (waiting for that when ``wait``)."""
        self._jobs.put(None)
        if wait and self._thread is not threading.current_thread():
            self._thread.join()
