"""The page runs on a backend that works for the model (issue 11, item 3), on real zoo models that TFJS's
wasm backend cannot run (an Embedding + LSTM graph model: "_FusedMatMul only supports rank-1 bias") and a
rank-4 output (a Conv2D autoencoder), in headless Chromium:

* the default backend is the first of wasm, webgl, cpu that passed `deploykit verify` (the manifest's parity
  record), and boot.js preloads that one (no wasm binary is fetched when wasm failed);
* without a record, a failed run falls back to the next backend and the page says so;
* backends that failed verify are marked in the picker; ?backend= still comes first;
* "Check this device" passes on a rank-4 output, and `deploykit verify` ran the same page code.

Run: .venv/bin/python -m pytest tests/web/test_web_backends.py
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from web_helpers import ROOT, open_ready

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WASM_ERROR = "_FusedMatMul only supports rank-1 bias but got rank 3"  # TFJS's words, its final "." dropped


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "-1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, text=True, capture_output=True, timeout=1800)


def _zoo_bundle(module: str, builder: str, target: str, out: Path) -> Path:
    """Build a zoo model (tests/zoo, in a fresh process) and convert it with the real CLI."""
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'tests' / 'zoo')!r}); from pathlib import Path; import {module}; "
            f"m, d, t = {module}.{builder}(Path(sys.argv[1])); print(m); print(d)")
    built = _cli("-c", code, str(out))
    assert built.returncode == 0, built.stderr[-2000:]
    model, data = built.stdout.strip().splitlines()[-2:]
    args = ["-m", "convert", "convert", model, "--data", data, "--out", str(out / "bundle")]
    if target:
        args += ["--target", target]
    converted = _cli(*args)
    assert converted.returncode == 0, converted.stderr[-2000:]
    return out / "bundle"


# The bundles are made once per set of sources (tests/conftest.py's zoo cache; the names carry this file's digest).
_HERE = hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def _cached_bundle(from_zoo_cache: Any, name: str, make: Any) -> Path:
    def into(path: Path) -> None:
        path.mkdir()
        make(path)

    return from_zoo_cache(f"web-backends-{_HERE}-{name}", into) / "bundle"


@pytest.fixture(scope="module")
def lstm_bundle(web_dist: Path, from_zoo_cache: Any) -> Path:
    """sequence_lstm (Embedding + LSTM over int tokens), converted; no parity record yet."""
    return _cached_bundle(from_zoo_cache, "lstm", lambda out: _zoo_bundle("zoo_models", "sequence_lstm", "label", out))


@pytest.fixture(scope="module")
def lstm_verified(lstm_bundle: Path, from_zoo_cache: Any) -> Path:
    """The same bundle after `deploykit verify --runtimes chromium-wasm,chromium-cpu` (wasm fails, cpu passes)."""
    def make(out: Path) -> None:
        bundle = out / "bundle"
        shutil.copytree(lstm_bundle, bundle)
        res = _cli("-m", "convert", "verify", str(bundle), "--runtimes", "chromium-wasm,chromium-cpu")
        assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]

    return _cached_bundle(from_zoo_cache, "lstm-verified", make)


@pytest.fixture(scope="module")
def autoencoder_bundle(web_dist: Path, from_zoo_cache: Any) -> Path:
    """conv_autoencoder: a [n, 16, 16, 3] image in and out (a rank-4 output)."""
    return _cached_bundle(from_zoo_cache, "autoencoder", lambda out: _zoo_bundle("zoo_images", "conv_autoencoder", "", out))


@pytest.fixture
def serve(serve_folder: Any) -> Any:
    return serve_folder


def _options(page: Any) -> dict[str, tuple[str, str]]:
    return {o["value"]: (o["text"], o["verify"]) for o in page.evaluate(
        "[...document.querySelectorAll('#backend option')].map(o => ({value: o.value, text: o.textContent, verify: o.dataset.verify}))")}


def _check(page: Any) -> str:
    page.click("#check-button")
    verdict = page.wait_for_selector("#check-verdict", timeout=120_000)
    assert verdict.get_attribute("data-passed") == "true", verdict.inner_text()
    return verdict.inner_text()


def test_the_parity_record_says_wasm_failed(lstm_verified: Path) -> None:
    manifest = json.loads((lstm_verified / "web" / "manifest.json").read_text())
    by_runtime = {r["runtime"]: r for r in manifest["parity"]["results"] if r["artifact"] == "web/model/graph/model.json"}
    assert by_runtime["chromium-wasm"]["passed"] is False
    assert by_runtime["chromium-wasm"]["status"] == "unsupported"
    assert by_runtime["chromium-wasm"]["error"] == f"TFJS wasm cannot run web/model/graph/model.json: {WASM_ERROR}."
    assert by_runtime["chromium-cpu"]["status"] == "passed"


def test_default_backend_comes_from_the_parity_record(page: Any, serve: Any, lstm_verified: Path) -> None:
    url = serve(lstm_verified)
    open_ready(page, url)
    assert page.evaluate("deploykit.backend()") == "cpu"
    assert page.evaluate("deploykitBoot.backend") == "cpu"  # boot.js preloaded the same backend
    assert page.get_attribute("#load-status", "data-fallback") == "false"
    assert not [u for u in page.log.requests if u.endswith(".wasm")], "boot.js fetched a wasm binary it does not need"
    preloads = page.evaluate("[...document.querySelectorAll('link[rel=modulepreload]')].map(l => [l.href, l.integrity])")
    assert any(href.endswith("/vendor/backend-cpu.js") and sri.startswith("sha384-") for href, sri in preloads), preloads
    assert _options(page) == {
        "wasm": ("wasm (failed verify)", "failed"),
        "webgl": ("webgl", "none"),
        "cpu": ("cpu (default, passed verify)", "passed"),
    }
    assert page.get_attribute("#backend option[value=wasm]", "title") == f"TFJS wasm cannot run web/model/graph/model.json: {WASM_ERROR}."
    assert page.inner_text("#backend-note") == (
        "deploykit verify found that wasm cannot run this model as converted; the page uses cpu.")
    assert _check(page).startswith("PASS: this device (cpu) matches Keras on all ")
    assert not page.log.errors


def test_without_a_record_a_failed_run_falls_back_and_says_so(page: Any, serve: Any, lstm_bundle: Path) -> None:
    assert json.loads((lstm_bundle / "web" / "manifest.json").read_text())["parity"] is None
    url = serve(lstm_bundle)
    open_ready(page, url)
    assert page.evaluate("deploykit.backend()") == "webgl"
    assert page.get_attribute("#load-status", "data-fallback") == "true"
    assert page.inner_text("#load-status") == (
        f"The wasm backend could not run this model ({WASM_ERROR}). Using webgl instead.")
    assert page.input_value("#backend") == "webgl"
    assert _options(page)["wasm"] == ("wasm (default)", "none")
    page.fill("#json-input", json.dumps({"tokens": [[7] * 12]}))
    page.click("#predict-button")
    page.wait_for_selector("#prediction[data-value]")
    assert page.inner_text("#run-info").startswith("Backend in use: webgl · ")


def test_the_query_still_overrides_and_falls_back(page: Any, serve: Any, lstm_verified: Path) -> None:
    url = serve(lstm_verified)
    open_ready(page, url + "?backend=wasm")
    # wasm first, as asked; it fails, so the next one by the record: cpu (passed), not webgl (never verified)
    assert page.evaluate("deploykit.backend()") == "cpu"
    assert page.inner_text("#load-status") == f"The wasm backend could not run this model ({WASM_ERROR}). Using cpu instead."
    assert _options(page)["cpu"] == ("cpu (passed verify)", "passed")


def test_check_this_device_on_a_rank_4_output(page: Any, serve: Any, autoencoder_bundle: Path) -> None:
    manifest = json.loads((autoencoder_bundle / "web" / "manifest.json").read_text())
    assert manifest["outputs"][0]["shape"][1:] == [16, 16, 3]
    url = serve(autoencoder_bundle)
    for backend in ("wasm", "cpu"):
        open_ready(page, f"{url}?backend={backend}")
        assert page.evaluate("deploykit.backend()") == backend
        assert _check(page).startswith(f"PASS: this device ({backend}) matches Keras on all ")
    assert not page.log.errors


def test_verify_runs_the_pages_own_code(autoencoder_bundle: Path, tmp_path: Path) -> None:
    """`deploykit verify` runs the graph model on the bundle's own page: it passes on the rank-4 output, and an
    app.js that the manifest lists but index.html's sha384 does not is refused in the parity run itself."""
    import base64
    import hashlib

    good = tmp_path / "good"
    shutil.copytree(autoencoder_bundle, good)
    res = _cli("-m", "convert", "verify", str(good), "--runtimes", "chromium-wasm")
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    graph = [r for r in json.loads((good / "parity.json").read_text())["results"] if r["format"] == "tfjs_graph"]
    assert [(r["runtime"], r["status"]) for r in graph] == [("chromium-wasm", "passed")]

    bad = tmp_path / "bad"
    shutil.copytree(autoencoder_bundle, bad)
    app = bad / "web" / "app.js"
    app.write_text(app.read_text() + "\n;globalThis.tampered = true;\n")
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["files"]["web/app.js"] = hashlib.sha256(app.read_bytes()).hexdigest()  # verify's own check passes
    for where in (bad / "manifest.json", bad / "web" / "manifest.json"):
        where.write_text(json.dumps(manifest, indent=1))
    assert "sha384-" + base64.b64encode(hashlib.sha384(app.read_bytes()).digest()).decode() not in (bad / "web" / "index.html").read_text()
    res = _cli("-m", "convert", "verify", str(bad), "--runtimes", "chromium-wasm")
    assert res.returncode == 1, res.stdout[-2000:] + res.stderr[-2000:]
    graph = [r for r in json.loads((bad / "parity.json").read_text())["results"] if r["format"] == "tfjs_graph"]
    assert graph[0]["error"] == ("TFJS wasm cannot run web/model/graph/model.json: the browser refused app.js: it does "
                                 "not match its sha384 in index.html. Nothing was run: copy the bundle again.")
