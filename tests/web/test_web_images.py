"""Images on the page, in a real headless Chromium, on the image classifier bundle (tests/image_model.py,
converted with --labels): the page's tensor equals the Pi runner's (edge/images.py) exactly, bit for bit
in float32, for the same PNG; the file picker, drag and drop and the camera (Chromium's fake device) each
show the picture and the top-k with the labels as text; the Pi runner over HTTP on loopback (upload and
b64) gives the same top-k for the same PNG.

Run: .venv/bin/python -m pytest tests/web/test_web_images.py
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from edge import images
from web_helpers import CHROMIUM_ARGS, ROOT

pytestmark = pytest.mark.browser

sys.path.insert(0, str(ROOT / "tests" / "edge"))
from edge_helpers import Server  # noqa: E402

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
SCORE_TOL = 1e-5  # TFJS wasm vs TFLite on a softmax output: float32 rounding of two runtimes


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium with a fake camera (a generated video) that needs no permission prompt."""
    from convert.parity.browser import find_chromium

    import playwright.sync_api as playwright_api  # the test extra installs it
    with playwright_api.sync_playwright() as p:
        exe = find_chromium()
        args = [*CHROMIUM_ARGS, *FAKE_CAMERA]
        b = p.chromium.launch(executable_path=exe, args=args) if exe else p.chromium.launch(args=args)
        yield b
        b.close()


@pytest.fixture(scope="module")
def image_site(web_dist: Path, image_bundle: dict[str, Any]) -> Iterator[str]:
    from convert.serve_web import serve_in_thread

    server, url = serve_in_thread(image_bundle["bundle"] / "web")
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def pi(image_bundle: dict[str, Any]) -> Iterator[Server]:
    server = Server(image_bundle["bundle"], "--variant", "float32")
    yield server
    server.stop()


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def open_images(pg: Any, url: str) -> None:
    pg.goto(url)
    pg.wait_for_selector("body[data-state=ready]")
    pg.wait_for_selector("#image-panel")


PAGE_TENSOR = """async (b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return deploykit.image.tensor(new Blob([bytes], { type: 'image/png' }));
}"""

DROP = """async ({ b64, name }) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const dt = new DataTransfer();
  dt.items.add(new File([bytes], name, { type: 'image/png' }));
  const zone = document.getElementById('image-drop');
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: dt, bubbles: true, cancelable: true }));
  }
}"""


def shown_top_k(pg: Any) -> list[dict[str, Any]]:
    return pg.eval_on_selector_all(
        "#image-topk li",
        "lis => lis.map(li => ({index: Number(li.dataset.index), score: Number(li.dataset.score), "
        "label: li.querySelector('.label').textContent}))")


def pi_top_k(pi: Server, data: bytes) -> list[dict[str, Any]]:
    status, _, body = pi.request("POST", "/v1/models/colours:classify", data, {"Content-Type": "image/png"})
    assert status == 200, body
    upload = json.loads(body)["predictions"][0]["top_k"]
    status, b64 = pi.json("POST", "/v1/models/colours:classify",
                          {"instances": [{"b64": base64.b64encode(data).decode()}]})
    assert status == 200, b64
    assert b64["predictions"][0]["top_k"] == upload
    return upload


def same_top_k(page_top: list[dict[str, Any]], pi_top: list[dict[str, Any]]) -> None:
    assert [t["index"] for t in page_top] == [t["index"] for t in pi_top]
    assert [t["label"] for t in page_top] == [t["label"] for t in pi_top]
    for a, b in zip(page_top, pi_top):
        assert abs(a["score"] - b["score"]) <= SCORE_TOL, (a, b)


def test_page_tensor_equals_the_pi_tensor_bit_for_bit(page: Any, image_site: str, image_bundle: dict[str, Any]) -> None:
    open_images(page, image_site)
    spec = images.image_inputs(json.loads((image_bundle["bundle"] / "manifest.json").read_text()))[0]
    rng = np.random.default_rng(3)
    files = [p.read_bytes() for p in image_bundle["pngs"]]
    # noise, so every weight and rounding shows: shrink, enlarge, odd ratios, the model's own size
    files += [png(rng.integers(0, 256, shape, dtype=np.uint8)) for shape in [(97, 53, 3), (7, 5, 3), (32, 32, 3), (33, 250, 3)]]
    files.append(png(rng.integers(0, 256, (40, 30), dtype=np.uint8)))  # grayscale PNG
    for data in files:
        expected = images.to_tensor(data, spec)[0].reshape(-1)
        got = np.asarray(page.evaluate(PAGE_TENSOR, base64.b64encode(data).decode()), dtype=np.float64)
        assert got.shape == expected.shape
        assert np.array_equal(got.astype(np.float32), expected), np.abs(got - expected).max()
        assert np.array_equal(got, expected.astype(np.float64))  # the page's values are float32 numbers too
    assert not page.log.errors


def test_file_picker_and_drop_show_the_same_top_k_as_the_pi(page: Any, image_site: str, image_bundle: dict[str, Any],
                                                           pi: Server) -> None:
    from image_model import LABELS

    open_images(page, image_site)
    pngs = image_bundle["pngs"]
    page.set_input_files("#image-file", str(pngs[2]))
    page.wait_for_selector("body[data-images='1']")
    top = shown_top_k(page)
    assert top[0]["label"] == LABELS[2] == "<b>blue</b>"
    assert page.eval_on_selector_all("#image-panel b, #image-panel img:not(#image-preview)", "e => e.length") == 0
    same_top_k(top, pi_top_k(pi, pngs[2].read_bytes()))
    assert page.get_attribute("#image-preview", "src").startswith("blob:")
    assert page.is_visible("#image-preview")

    page.evaluate(DROP, {"b64": base64.b64encode(pngs[1].read_bytes()).decode(), "name": pngs[1].name})
    page.wait_for_selector("body[data-images='2']")
    top = shown_top_k(page)
    assert top[0]["label"] == LABELS[1]
    same_top_k(top, pi_top_k(pi, pngs[1].read_bytes()))
    assert page.is_hidden("#json-field") and page.is_hidden("#predict-button")
    assert not page.log.errors


def test_not_an_image_says_so(page: Any, image_site: str, tmp_path: Path) -> None:
    open_images(page, image_site)
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"not a picture")
    page.set_input_files("#image-file", str(bad))
    page.wait_for_selector("#image-msg.error")
    assert page.inner_text("#image-msg").startswith("Error: This file is not an image this browser can decode (")


def test_camera_takes_a_picture(page: Any, image_site: str) -> None:
    open_images(page, image_site)
    assert page.is_visible("#camera-button")
    page.click("#camera-button")
    page.wait_for_selector("#camera-shot:not([hidden])")
    page.wait_for_function("document.getElementById('camera-video').videoWidth > 0")
    page.click("#camera-shot")
    page.wait_for_selector("body[data-images='1']")
    assert len(shown_top_k(page)) == 4
    page.click("#camera-button")  # stops it
    page.wait_for_selector("#camera-video[hidden]", state="attached")


def test_no_camera_no_camera_button(page: Any, image_site: str) -> None:
    page.add_init_script("Object.defineProperty(navigator, 'mediaDevices', { value: undefined })")
    open_images(page, image_site)
    assert page.is_hidden("#camera-button")
    assert page.is_visible("#image-file")
