"""The static page in a real headless Chromium (Playwright), on a real bundle served from localhost.

Run: .venv/bin/python -m pytest tests/web -m browser
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from web_helpers import ARTIFACTS, COURSE_ROW, LABELS, fill_row, open_ready, prediction

pytestmark = pytest.mark.browser

REL = 1e-5


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("backend", ["wasm", "cpu"])
def test_course_row_matches_keras(page: Any, site: str, boston: dict[str, Any], backend: str) -> None:
    open_ready(page, site)
    assert page.evaluate("deploykit.backend()") == "wasm", "wasm must be the default backend"
    if backend != "wasm":
        page.select_option("#backend", backend)
        page.wait_for_function(f"deploykit.backend() === '{backend}' && !document.querySelector('#backend').disabled")
    fill_row(page, COURSE_ROW)
    page.get_by_label(LABELS[-1], exact=True).press("Enter")  # Enter submits
    value = prediction(page)
    assert rel_err(value, boston["keras"]) <= REL, (value, boston["keras"])
    info = page.inner_text("#run-info")
    assert info.startswith(f"Backend in use: {backend} · prediction time ")
    assert info.endswith(" ms")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"web-prediction-{backend}.png"), full_page=True)
    assert not page.log.errors


def test_form_is_generated_from_manifest(page: Any, site: str, boston: dict[str, Any]) -> None:
    open_ready(page, site)
    features = boston["manifest"]["features"]
    labels = page.eval_on_selector_all("#fields label", "ls => ls.map(l => l.textContent)")
    assert labels == [f["label"] for f in features] == LABELS
    for f in features:
        field = page.get_by_label(f["label"], exact=True)
        assert float(field.get_attribute("placeholder")) == pytest.approx(f["median"], rel=1e-5)
        hint_id = field.get_attribute("aria-describedby").split()[0]
        hint = page.inner_text(f"#{hint_id}")
        assert "training range" in hint and (f["unit"] or "") in hint
    assert page.get_attribute("#result", "aria-live") == "polite"
    assert page.get_attribute("#check-result", "aria-live") == "polite"


@pytest.mark.parametrize(
    "text, message",
    [
        ("", "Required: enter a number."),
        ("abc", '"abc" is not a number: use digits, e.g. 6.5.'),
        ("1e999", "1e999 is too large: enter a finite number."),
    ],
)
def test_bad_input_errors_at_field_and_no_prediction(page: Any, site: str, text: str, message: str) -> None:
    open_ready(page, site)
    fill_row(page, [text, "250", "66.5"])
    page.click("#predict-button")
    field = page.get_by_label(LABELS[0], exact=True)
    msg_id = field.get_attribute("aria-describedby").split()[1]
    page.wait_for_function(f"document.getElementById('{msg_id}').textContent !== ''")
    assert page.inner_text(f"#{msg_id}") == message
    assert field.get_attribute("aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == field.get_attribute("id")
    assert page.is_hidden("#result")
    assert page.get_attribute("#prediction", "data-value") is None
    assert "NaN" not in page.inner_text("body")


def test_bad_input_clears_an_earlier_prediction(page: Any, site: str) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.click("#predict-button")
    prediction(page)
    fill_row(page, ["abc", "250", "66.5"])
    page.click("#predict-button")
    page.wait_for_selector("#result", state="hidden")
    assert "NaN" not in page.inner_text("body")


def test_out_of_range_warns_and_predicts(page: Any, site: str, boston: dict[str, Any]) -> None:
    open_ready(page, site)
    rm = boston["manifest"]["features"][0]
    fill_row(page, [str(rm["max"] + 1), "250", "66.5"])
    page.click("#predict-button")
    value = prediction(page)
    assert value == value  # a number, not NaN
    field = page.get_by_label(LABELS[0], exact=True)
    msg_id = field.get_attribute("aria-describedby").split()[1]
    assert "the model is extrapolating" in page.inner_text(f"#{msg_id}")
    assert field.get_attribute("aria-invalid") == "false"
    assert page.is_visible("#extrapolation")
    assert "Number of rooms is outside the training range" in page.inner_text("#extrapolation")


def test_backend_switching(page: Any, site: str, boston: dict[str, Any]) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.click("#predict-button")
    seen = {}
    for backend in ["cpu", "webgl", "wasm"]:
        page.select_option("#backend", backend)
        page.wait_for_function(
            f"document.querySelector('#run-info').dataset.backend === '{backend}' && !document.querySelector('#backend').disabled"
        )
        assert page.evaluate("deploykit.backend()") == backend
        assert page.input_value("#backend") == backend
        seen[backend] = prediction(page)
    assert rel_err(seen["wasm"], boston["keras"]) <= REL
    assert rel_err(seen["cpu"], boston["keras"]) <= REL
    assert not page.log.errors


@pytest.mark.parametrize("backend", ["wasm", "cpu", "webgl"])
def test_check_this_device_passes(page: Any, site: str, backend: str) -> None:
    open_ready(page, site + f"?backend={backend}")
    assert page.evaluate("deploykit.backend()") == backend
    page.click("#check-button")
    verdict = page.wait_for_selector("#check-verdict")
    assert verdict.get_attribute("data-passed") == "true", verdict.inner_text()
    assert verdict.inner_text().startswith(f"PASS: this device ({backend}) matches Keras on all ")
    largest = float(page.inner_text("#check-max-error"))
    assert largest >= 0.0
    assert "Largest error / output scale" in page.inner_text("#check-result")


def test_page_works_under_a_sub_path(page: Any, boston: dict[str, Any], tmp_path: Path) -> None:
    from convert.serve_web import serve_in_thread

    deep = tmp_path / "root" / "some" / "sub path"
    shutil.copytree(boston["bundle"] / "web", deep / "web")
    server, url = serve_in_thread(tmp_path / "root")
    try:
        open_ready(page, url + "some/sub%20path/web/")
        fill_row(page, COURSE_ROW)
        page.click("#predict-button")
        assert rel_err(prediction(page), boston["keras"]) <= REL
        paths = {urlparse(u).path for u in page.log.requests}
        assert all(p.startswith("/some/sub%20path/web/") for p in paths), paths
        # boot.js's early fetches resolve to the same (percent-encoded) URLs the page asks for: used, not repeated.
        fetched = [urlparse(u).path for u in page.log.requests]
        assert fetched.count("/some/sub%20path/web/manifest.json") == 1, fetched
        assert fetched.count("/some/sub%20path/web/model/graph/model.json") == 1, fetched
        assert len([p for p in fetched if p.endswith(".wasm")]) == 1, fetched
    finally:
        server.shutdown()
        server.server_close()


def test_file_url_explains_and_gives_the_command(page: Any, boston: dict[str, Any]) -> None:
    index = boston["bundle"] / "web" / "index.html"
    page.goto(index.as_uri())
    banner = page.wait_for_selector("#file-warning", state="visible")
    text = banner.inner_text()
    assert "This page must be served over http" in text
    assert page.inner_text("#file-command") == f"deploykit serve-web {boston['bundle']}"
    assert page.inner_text("#file-command-alt") == f"python3 -m http.server -d {boston['bundle'] / 'web'}"
    assert page.is_hidden("#load-status")
    assert page.is_hidden("#predict-form")


def test_no_request_leaves_localhost(page: Any, site: str) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.click("#predict-button")
    prediction(page)
    for backend in ["cpu", "webgl", "wasm"]:
        page.select_option("#backend", backend)
        page.wait_for_function(f"deploykit.backend() === '{backend}' && !document.querySelector('#backend').disabled")
    page.click("#check-button")
    page.wait_for_selector("#check-verdict")
    hosts = {urlparse(u).hostname for u in page.log.requests if not u.startswith("data:")}
    assert hosts == {"127.0.0.1"}, page.log.requests
    # And the page really fetched its parts from there (the log is not empty by accident).
    paths = {urlparse(u).path for u in page.log.requests}
    assert {"/manifest.json", "/golden.json", "/model/graph/model.json", "/vendor/tfjs.js"} <= paths


def test_tensors_are_disposed_over_1000_predictions(page: Any, site: str) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.click("#predict-button")
    prediction(page)
    counts = page.evaluate(
        """async () => {
            const before = deploykit.memory().numTensors;
            for (let i = 0; i < 1000; i++) await deploykit.submit();
            return [before, deploykit.memory().numTensors];
        }"""
    )
    assert counts[0] == counts[1], counts


def test_keyboard_only_use(page: Any, site: str, boston: dict[str, Any]) -> None:
    open_ready(page, site)
    page.focus("#feature-0")
    for value in COURSE_ROW:
        page.keyboard.type(str(value))
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "backend"
    page.keyboard.press("Enter")  # Enter in the form submits it from any field
    page.focus("#feature-2")
    page.keyboard.press("Enter")
    assert rel_err(prediction(page), boston["keras"]) <= REL


def test_phone_layout(browser: Any, site: str) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, device_scale_factor=2, is_mobile=True, has_touch=True)
    try:
        pg = context.new_page()
        open_ready(pg, site)
        fill_row(pg, COURSE_ROW)
        pg.click("#predict-button")
        prediction(pg)
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"horizontal scroll on a phone: {width}px"
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / "web-prediction-phone.png"), full_page=True)
    finally:
        context.close()


@pytest.fixture
def edge_server(boston: dict[str, Any], site: str) -> Any:
    """A real `deploykit-edge serve` (float32 TFLite) on a free port that allows the page's origin."""
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    from web_helpers import ROOT

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    origin = site.rstrip("/")
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", str(boston["bundle"]), "--port", str(port), "--variant", "float32",
         "--allow-origin", origin],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        try:
            urllib.request.urlopen(url + "/healthz", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"deploykit-edge serve did not start: {proc.stderr.read()}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_compare_with_edge_server(page: Any, site: str, boston: dict[str, Any], edge_server: str) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.get_by_label("Edge server URL", exact=True).fill(edge_server)
    page.click("#compare-button")
    page.wait_for_selector("#compare-table")
    cells = page.eval_on_selector_all("#compare-table tbody tr td", "tds => tds.map(t => t.textContent)")
    name, browser_value, edge_value, diff, rel = cells
    assert name == "medv"
    assert rel_err(float(browser_value), boston["keras"]) <= REL
    assert rel_err(float(edge_value), boston["keras"]) <= REL
    assert float(diff) == pytest.approx(abs(float(browser_value) - float(edge_value)), abs=1e-5)
    heads = page.eval_on_selector_all("#compare-table thead th", "ths => ths.map(t => t.textContent)")
    assert heads == ["", "Browser (wasm)", "Edge server", "Difference", "Relative"]
    assert not page.log.errors


def test_compare_with_unreachable_edge_says_why(page: Any, site: str) -> None:
    open_ready(page, site)
    fill_row(page, COURSE_ROW)
    page.get_by_label("Edge server URL", exact=True).fill("not a url")
    page.click("#compare-button")
    assert page.inner_text("#edge-url-msg") == '"not a url" is not a URL: write it like http://raspberrypi.local:8000'
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    page.get_by_label("Edge server URL", exact=True).fill(f"http://127.0.0.1:{port}")
    page.click("#compare-button")
    page.wait_for_function("document.querySelector('#compare-result').textContent.startsWith('Could not compare')")
    text = page.inner_text("#compare-result")
    assert f"no answer from http://127.0.0.1:{port}/predict_json" in text
    assert "CORS" in text
