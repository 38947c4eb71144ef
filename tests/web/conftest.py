"""Fixtures for the web page tests: one built page, one bundle, one static server, one Chromium per session.

The bundle is made by the real CLI (`deploykit train` then `deploykit convert`, cached: tests/conftest.py), with the
page freshly built by `npm run build` in web/. Chromium is the one verify drives (``find_chromium``: Debian's
chromium-headless-shell, else chromium; Playwright cannot download its own browser here), or Playwright's own.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest

from convert.parity.browser import find_chromium
from tests.helpers import WEB_BUILT, build_page, run
from web_helpers import ARTIFACTS, CHROMIUM_ARGS, COURSE_ROW, ROOT, WEB  # noqa: F401


def build_web() -> Path:
    """`npm run build` in web/; returns web/dist. Under ``pytest -n`` the controller built it before starting the
    workers (tests/conftest.py), so that no worker rebuilds web/dist while another copies it into a bundle."""
    if not (WEB / "node_modules").is_dir():
        pytest.skip("web/node_modules is missing: run `npm ci` in web/")
    if os.environ.get(WEB_BUILT) == "1" and (WEB / "dist" / "index.html").is_file():
        return WEB / "dist"
    res = build_page()
    assert res.returncode == 0, res.stdout + res.stderr
    return WEB / "dist"


def keras_course_prediction(model: Path) -> float:
    """Keras's own prediction for the course row (6, 250, 66.5), in a fresh process."""
    code = (
        "import sys, keras, numpy as np; m = keras.saving.load_model(sys.argv[1]); "
        f"print(repr(float(m.predict(np.array([{COURSE_ROW}], np.float32), verbose=0)[0, 0])))"
    )
    res = run([sys.executable, "-c", code, model], timeout=900)
    assert res.returncode == 0, res.stderr
    return float(res.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def web_dist() -> Path:
    return build_web()


@pytest.fixture(scope="session")
def boston(web_dist: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    """{"bundle": Path, "keras": float, "manifest": dict} for the Boston MLP (tests/conftest.py made it by the CLI)."""
    bundle = request.getfixturevalue("boston_mlp_bundle")
    model = request.getfixturevalue("boston_mlp")
    from_cache = request.getfixturevalue("from_cache")  # cached beside the model: no TensorFlow on a repeat run
    keras_file = from_cache("mlp.course-prediction.txt",
                            lambda path: path.write_text(repr(keras_course_prediction(model))))
    keras_value = float(keras_file.read_text())
    assert (bundle / "web" / "index.html").is_file(), "the bundle has no web/index.html"
    manifest = json.loads((bundle / "web" / "manifest.json").read_text())
    return {"bundle": bundle, "keras": keras_value, "manifest": manifest}


@pytest.fixture(scope="session")
def site(boston: dict[str, Any]) -> Iterator[str]:
    """Base URL of BUNDLE/web served by convert.serve_web on a free localhost port."""
    from convert.serve_web import serve_in_thread

    server, url = serve_in_thread(boston["bundle"] / "web")
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium per test module (Playwright allows one sync instance at a time; other suites launch their own)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        exe = find_chromium()
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else p.chromium.launch(args=CHROMIUM_ARGS)
        yield b
        b.close()


class PageLog:
    """Requests and errors a page produced."""

    def __init__(self) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh context and page; `page.log` records every request URL and page error."""
    context = browser.new_context()
    pg = context.new_page()
    log = PageLog()
    pg.on("request", lambda r: log.requests.append(r.url))
    pg.on("pageerror", lambda e: log.errors.append(str(e)))
    pg.on("console", lambda m: log.errors.append(m.text) if m.type == "error" else None)
    pg.log = log
    pg.set_default_timeout(30_000)
    yield pg
    context.close()


@pytest.fixture
def serve_folder() -> Iterator[Any]:
    """serve_folder(bundle) -> URL of the bundle's web folder on its own localhost server (stopped after the test)."""
    from convert.serve_web import serve_in_thread

    servers = []

    def start(bundle: Path) -> str:
        server, url = serve_in_thread(bundle / "web")
        servers.append(server)
        return url

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()
