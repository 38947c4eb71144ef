"""A model slower than ``ServeConfig.offload_after`` a prediction (timed at start-up) runs on the app's
inference thread, so the event loop answers /healthz while the interpreter is busy; a fast one stays
inline (the fast path). In-process through ASGI; the model is slowed by a sleep around its real predict."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from edge.server import EdgeApp, ServeConfig, build_app
from edge_helpers import acall

TFS = b'{"instances": [[6, 250, 66.5]]}'
SLOW = 0.1  # seconds per prediction


def _health_while_predicting(app: EdgeApp) -> tuple[float, int, list[int]]:
    """Slow the model, send 4 predictions and then one /healthz; (the seconds until /healthz was answered, how many
    predictions had been answered by then, the predictions' statuses)."""
    real = app.p.predict

    def slow(inputs):
        time.sleep(SLOW)
        return real(inputs)

    app.p.predict = slow  # type: ignore[method-assign]

    async def scenario() -> tuple[float, int, list[int]]:
        start = time.perf_counter()
        tasks = [asyncio.create_task(acall(app, "POST", "/v1/models/boston_mlp:predict", TFS)) for _ in range(4)]
        status, _ = await asyncio.create_task(acall(app, "GET", "/healthz"))  # arrives behind them
        seconds, finished = time.perf_counter() - start, sum(task.done() for task in tasks)
        assert status == 200
        return seconds, finished, [s for s, _ in await asyncio.gather(*tasks)]

    try:
        return asyncio.run(scenario())
    finally:
        app.shutdown()


def test_a_slow_model_runs_off_the_event_loop(bundle: Path) -> None:
    app = build_app(ServeConfig(bundle=str(bundle), offload_after=0.0))  # every model is "slow"
    app.startup()
    assert app.ready and app.predict_seconds is not None and app.predict_seconds > 0
    assert app._executor is not None and app.inline is False  # the fast path stands aside
    _, finished, statuses = _health_while_predicting(app)
    assert statuses == [200] * 4
    assert finished < 4, finished  # answered before the predictions were (they take 4 * SLOW on one thread)


def test_a_fast_model_stays_inline(bundle: Path) -> None:
    """The Boston MLP (microseconds a prediction) is answered on the event loop: a slow predict there
    holds /healthz up, which is what the inference thread is for."""
    app = build_app(ServeConfig(bundle=str(bundle)))
    app.startup()
    assert app.predict_seconds is not None and app.predict_seconds < app.config.offload_after
    assert app._executor is None and app.inline is True
    seconds, finished, statuses = _health_while_predicting(app)
    assert statuses == [200] * 4
    assert finished == 4 and seconds >= 4 * SLOW, (finished, seconds)  # behind all four predictions


def test_threads_reach_the_interpreter(bundle: Path) -> None:
    assert build_app(ServeConfig(bundle=str(bundle), threads=2)).p.num_threads == 2
