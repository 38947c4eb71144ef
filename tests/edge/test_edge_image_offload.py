"""Where an image request's decoding and prediction run on the Pi runner (``edge.server.inference``): a lone
small upload on the event loop (no thread hand-off), concurrent ones, batches and big pictures on the
inference thread, and ``/healthz`` answers while a slow image model predicts. In-process through ASGI, on
the real image classifier bundle (tests/image_model.py); the threads are told apart by the name of the one
that decoded each image."""

from __future__ import annotations

import base64
import io
import json
import time
from typing import Any, Iterator

import numpy as np
import pytest

from edge import images
from edge_helpers import acall


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_a_big_upload_is_decoded_off_the_event_loop(image_bundle: dict[str, Any],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """When predictions run on the event loop (a repository whose default model is fast and takes no image:
    here ``Images.offloads`` says no), a small upload is decoded there too, one over INLINE_DECODE_BYTES on
    another thread."""
    import asyncio
    import threading

    from edge.server import ServeConfig, build_app
    from edge.server.images import INLINE_DECODE_BYTES

    where: list[str] = []
    real = images.load
    monkeypatch.setattr(images, "load", lambda *a, **k: where.append(threading.current_thread().name) or real(*a, **k))
    app = build_app(ServeConfig(bundle=str(image_bundle["bundle"]), variant="float32"))
    monkeypatch.setattr(app.images, "offloads", lambda: False)
    small = image_bundle["pngs"][0].read_bytes()
    big = png(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    assert len(small) <= INLINE_DECODE_BYTES < len(big)

    async def post(body: bytes) -> int:
        return (await acall(app, "POST", "/v1/models/colours:classify", body, content_type=b"image/png"))[0]

    try:
        app.startup()
        assert app.inline and app._executor is None
        assert asyncio.run(post(small)) == 200 and asyncio.run(post(big)) == 200
        assert where[0] == threading.current_thread().name and where[1] != where[0], where
    finally:
        app.shutdown()


def test_an_image_model_gets_an_inference_thread(image_bundle: dict[str, Any]) -> None:
    """The colours model predicts in microseconds, under the 2 ms threshold, yet its server decodes uploads:
    it gets an inference thread (the fast path stands aside), seeded with the time measured at start-up."""
    from edge.server import ServeConfig, build_app

    app = build_app(ServeConfig(bundle=str(image_bundle["bundle"]), variant="float32"))
    try:
        app.startup()
        assert app.predict_seconds is not None and app.predict_seconds < app.config.offload_after
        assert app.images.offloads() and app._executor is not None and app.inline is False
        assert app._executor.typical <= app.predict_seconds
    finally:
        app.shutdown()


@pytest.fixture
def image_app(image_bundle: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, list[str]]]:
    """The colours model's app, started, and the names of the threads its images were decoded on
    (decoding runs in the same call as the prediction)."""
    import threading

    from edge.server import ServeConfig, build_app

    where: list[str] = []
    real = images.load
    monkeypatch.setattr(images, "load", lambda *a, **k: where.append(threading.current_thread().name) or real(*a, **k))
    app = build_app(ServeConfig(bundle=str(image_bundle["bundle"]), variant="float32"))
    app.startup()
    try:
        yield app, where
    finally:
        app.shutdown()


async def _post(app: Any, body: bytes, ctype: bytes = b"image/png") -> int:
    status, answer = await acall(app, "POST", "/v1/models/colours:classify", body, content_type=ctype)
    assert status == 200, answer
    return status


def test_a_lone_upload_predicts_on_the_event_loop_two_at_once_on_the_thread(
        image_app: tuple[Any, list[str]], image_bundle: dict[str, Any]) -> None:
    """Alone, an upload pays no thread hand-off; with a second request in flight both queue on the
    inference thread (the second one arrived before the first decided), and alone again is inline again."""
    import asyncio
    import threading

    from edge.server.inference import NAME

    app, where = image_app
    small = image_bundle["pngs"][0].read_bytes()

    async def two() -> None:
        await asyncio.gather(_post(app, small), _post(app, small))

    asyncio.run(_post(app, small))
    asyncio.run(two())
    asyncio.run(_post(app, small))
    loop_thread = threading.current_thread().name
    assert where == [loop_thread, NAME, NAME, loop_thread]
    assert (app._executor.inline_calls, app._executor.thread_calls) == (2, 2)


def test_a_batch_or_a_big_upload_goes_to_the_thread_even_alone(image_app: tuple[Any, list[str]],
                                                                 image_bundle: dict[str, Any]) -> None:
    """More than one prediction's work never runs on the event loop: two b64 images in one request, or a
    picture over INLINE_DECODE_BYTES (its decoding alone costs milliseconds)."""
    import asyncio

    from edge.server.images import INLINE_DECODE_BYTES
    from edge.server.inference import NAME

    app, where = image_app
    small = image_bundle["pngs"][0].read_bytes()
    b64 = base64.b64encode(small).decode()
    big = png(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8))
    assert len(big) > INLINE_DECODE_BYTES
    asyncio.run(_post(app, json.dumps({"instances": [{"b64": b64}, {"b64": b64}]}).encode(), b"application/json"))
    asyncio.run(_post(app, big))
    assert where == [NAME, NAME, NAME]


def test_healthz_answers_while_a_slow_image_model_predicts(image_app: tuple[Any, list[str]],
                                                           image_bundle: dict[str, Any]) -> None:
    """The model turns slow (0.1 s of computing before its real predict, hashing with the GIL released as
    the interpreter's kernels run): the first lone upload still runs on the event loop (the model was fast
    until then, and a call holds the loop for at most itself), the next goes to the inference thread, and
    /healthz answers while it predicts."""
    import asyncio
    import hashlib
    import threading

    from edge.server.inference import NAME

    app, where = image_app
    real = app.p.predict
    slow = 0.1
    block = bytes(1 << 20)

    def costly(inputs: Any) -> Any:
        start = time.thread_time()
        while time.thread_time() - start < slow:
            hashlib.sha256(block)  # releases the GIL for a buffer this big
        return real(inputs)

    app.p.predict = costly  # type: ignore[method-assign]
    small = image_bundle["pngs"][0].read_bytes()

    async def scenario() -> bool:
        await _post(app, small)  # inline: this is how the app learns the model is slow now
        upload = asyncio.create_task(_post(app, small))
        await asyncio.sleep(0.02)  # the upload is predicting (were it on the loop, this would wait for it)
        status, _ = await acall(app, "GET", "/healthz")
        assert status == 200
        answered_first = not upload.done()  # on the loop, the upload would have ended before /healthz ran
        await upload
        return answered_first

    # the order of the answers, not a time: at least 0.1 CPU seconds of predicting against one GET on the loop
    assert asyncio.run(scenario())
    assert where == [threading.current_thread().name, NAME]


def test_a_batch_of_tensors_goes_to_the_thread_one_row_stays_inline(image_app: tuple[Any, list[str]]) -> None:
    """TF Serving's JSON ``instances`` to an image model's ``:predict``: one row alone is inline, two rows in
    one request are a batch (the thread), whatever the caller marked."""
    import asyncio

    app, _ = image_app
    row = np.zeros((32, 32, 3)).tolist()
    calls = []
    for rows in (1, 2):
        status, answer = asyncio.run(acall(app, "POST", "/v1/models/colours:predict",
                                           json.dumps({"instances": [row] * rows}).encode()))
        assert status == 200, answer
        calls.append((app._executor.inline_calls, app._executor.thread_calls))
    assert calls == [(1, 0), (1, 1)]
