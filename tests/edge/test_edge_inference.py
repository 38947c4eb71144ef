"""``edge.server.inference.InferenceThread``: where a model call runs. A call that is alone, not heavy and
typically cheap runs on the event loop; anything else is queued on the one inference thread, in order. The
"typical" cost follows the calls (the median of the recent ones' CPU time), so a model that turns slow goes
to the thread and one that turns fast again comes back, while waiting (a loaded device) costs nothing. No
model here: the calls are Python functions."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable, Optional

import pytest

from edge.server.inference import NAME, RECENT, InferenceThread

CHEAP = 0.0025  # the threshold of these tests (ServeConfig.inline_under's default)


def where() -> str:
    return threading.current_thread().name


def burn(seconds: float) -> str:
    """Compute for ``seconds`` of this thread's CPU time (a slow model); the thread's name."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass
    return where()


def run(thread: InferenceThread, fn: Callable[[], Any], alone: Optional[Callable[[], bool]] = lambda: True,
        heavy: bool = False) -> Any:
    async def go() -> Any:
        return await thread.run(fn, alone=alone, heavy=heavy)
    return asyncio.run(go())


@pytest.fixture
def thread() -> Any:
    t = InferenceThread(CHEAP, seconds=0.0001)
    yield t
    t.shutdown()


def test_a_lone_cheap_call_runs_on_the_event_loop(thread: InferenceThread) -> None:
    assert run(thread, where) == threading.current_thread().name
    assert (thread.inline_calls, thread.thread_calls) == (1, 0)


@pytest.mark.parametrize("alone, heavy", [(lambda: False, False), (None, False), (lambda: True, True)])
def test_not_alone_or_heavy_goes_to_the_thread(thread: InferenceThread, alone: Any, heavy: bool) -> None:
    assert run(thread, where, alone, heavy) == NAME == thread.name
    assert (thread.inline_calls, thread.thread_calls) == (0, 1)


def test_alone_is_asked_after_the_loop_had_a_turn(thread: InferenceThread) -> None:
    """A request read in the same turn as this one starts (and is counted) before this one decides."""
    inflight = [1]

    async def scenario() -> tuple[str, str]:
        first = asyncio.create_task(thread.run(where, alone=lambda: inflight[0] <= 1))
        await asyncio.sleep(0)  # the first has reached its decision's await; now a second request arrives
        inflight[0] = 2
        second = asyncio.create_task(thread.run(where, alone=lambda: inflight[0] <= 1))
        return await first, await second

    assert asyncio.run(scenario()) == (NAME, NAME)


def test_a_call_while_one_is_queued_goes_behind_it(thread: InferenceThread) -> None:
    """With a call on the thread, another call queues behind it even if the caller thinks it is alone: calls
    on the thread keep their order and never overlap with one on the loop."""
    release = threading.Event()
    order: list[str] = []

    def first() -> str:
        release.wait(5)
        order.append("first")
        return where()

    def second() -> str:
        order.append("second")
        return where()

    async def scenario() -> tuple[str, str]:
        a = asyncio.create_task(thread.run(first, alone=lambda: False))
        await asyncio.sleep(0.01)
        assert thread.queued == 1
        b = asyncio.create_task(thread.run(second, alone=lambda: True))
        await asyncio.sleep(0.01)
        release.set()
        return await a, await b

    assert asyncio.run(scenario()) == (NAME, NAME)
    assert order == ["first", "second"] and thread.queued == 0


def test_a_model_that_turns_slow_goes_to_the_thread_and_comes_back(thread: InferenceThread) -> None:
    slow = lambda: burn(2 * CHEAP)  # noqa: E731
    fast = where
    assert run(thread, slow) == threading.current_thread().name  # typical was cheap: this one ran inline
    assert thread.typical >= 2 * CHEAP
    assert run(thread, slow) == NAME  # now known to be slow: the loop is not held again
    for _ in range(RECENT):  # fast calls (on the thread, then inline) bring the median back under the threshold
        run(thread, fast)
    assert thread.typical < CHEAP
    assert run(thread, fast) == threading.current_thread().name


def test_heavy_calls_are_not_timed(thread: InferenceThread) -> None:
    run(thread, lambda: burn(2 * CHEAP), heavy=True)
    assert thread.typical == 0.0001 and run(thread, where) == threading.current_thread().name


def test_waiting_is_not_cost(thread: InferenceThread) -> None:
    """A call that waits (as one does on a loaded device: preempted, or for the GIL) without computing is
    still cheap: the wall time of a busy machine does not send a cheap model to the thread."""
    for _ in range(RECENT):
        assert run(thread, lambda: time.sleep(2 * CHEAP) or where()) == threading.current_thread().name
    assert thread.typical < CHEAP


def test_without_a_start_up_time_or_threshold_every_call_is_queued() -> None:
    for t in (InferenceThread(CHEAP), InferenceThread(0.0, seconds=0.0)):
        try:
            assert run(t, where) == NAME
        finally:
            t.shutdown()


@pytest.mark.parametrize("alone", [lambda: True, lambda: False])
def test_errors_reach_the_caller_from_either_side(thread: InferenceThread, alone: Any) -> None:
    def fails() -> None:
        raise ValueError("bad input")

    with pytest.raises(ValueError, match="^bad input$"):
        run(thread, fails, alone)
    assert run(thread, lambda: 7, alone) == 7  # the thread survives


def test_call_waits_without_a_loop_and_shutdown_finishes_the_queue() -> None:
    t = InferenceThread()
    assert t.call(where) == NAME
    done: list[int] = []
    t._jobs.put((lambda: done.append(1), (), lambda r, e: None, False))
    t.shutdown(wait=True)
    assert done == [1] and not t._thread.is_alive()
