"""The page's start-up path in headless Chromium: what boot.js (inlined in index.html) fetches early is what
the page uses (each file fetched once, the wasm compiled once), a query string with every feature predicts
right away and correctly, and each early path falls back to the ordinary one when it does not fit.

Run: .venv/bin/python -m pytest tests/web/test_web_startup.py
"""

from __future__ import annotations

import copy
import gzip
import json
from collections import Counter
from typing import Any
from urllib.parse import urlparse

import pytest

from web_helpers import WEB, prediction

pytestmark = pytest.mark.browser

REL = 1e-5
QUERY = "rm=6&tax=250&age=66.5"


def rel_err(a: float, b: float) -> float:
    return abs(a - b) / abs(b)


def fetched(pg: Any) -> Counter[str]:
    """How often each path was requested (query strings dropped)."""
    return Counter(urlparse(u).path for u in pg.log.requests if not u.startswith("data:"))


def weight_files(boston: dict[str, Any]) -> list[str]:
    model = json.loads((boston["bundle"] / "web" / "model" / "graph" / "model.json").read_text())
    return [f"/model/graph/{p}" for group in model["weightsManifest"] for p in group["paths"]]


def test_query_string_predicts_with_every_file_fetched_once(page: Any, site: str, boston: dict[str, Any]) -> None:
    page.goto(f"{site}?{QUERY}")
    assert rel_err(prediction(page), boston["keras"]) <= REL
    assert page.evaluate("deploykit.backend()") == "wasm"
    assert [page.input_value(f"#feature-{i}") for i in range(3)] == ["6", "250", "66.5"]
    assert page.evaluate("performance.getEntriesByName('deploykit:first-prediction').length") == 1
    counts = fetched(page)
    for path in ["/manifest.json", "/model/graph/model.json", *weight_files(boston), "/vendor/tfjs.js", "/app.js"]:
        assert counts[path] == 1, (path, counts)
    wasm = {p: n for p, n in counts.items() if p.endswith(".wasm")}
    assert list(wasm.values()) == [1], wasm  # compiled by boot.js and handed to the backend, not fetched again
    assert not page.log.errors


def gzip_size(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=6, mtime=0))


def test_page_weight_to_the_first_wasm_prediction_is_at_most_half_that_of_tf_min_js(page: Any, site: str,
                                                                                   boston: dict[str, Any]) -> None:
    """Issue 4's goal, from the files the page really fetched: HTML + JS + wasm + model ≤ 50 % of the same page
    on TFJS's prebuilt tf.min.js + tf-backend-wasm.min.js, in bytes and gzipped (bench/web_bench.py measures the
    two pages side by side; the manifest, stylesheet and golden rows weigh the same on both and are not counted)."""
    page.goto(f"{site}?{QUERY}")
    assert rel_err(prediction(page), boston["keras"]) <= REL
    assert page.evaluate("deploykit.backend()") == "wasm"
    web = boston["bundle"] / "web"
    paths = [("index.html" if p == "/" else p.lstrip("/")) for p in fetched(page)]
    counted = [p for p in paths if not p.endswith((".css", "manifest.json", "golden.json"))]
    assert "vendor/tfjs.js" in counted and any(p.endswith(".wasm") for p in counted), counted
    ours = [(web / p).read_bytes() for p in counted]
    prebuilt = [WEB / "node_modules/@tensorflow/tfjs/dist/tf.min.js",
                WEB / "node_modules/@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.min.js"]
    theirs = [(web / p).read_bytes() for p in counted if p != "vendor/tfjs.js"] + [f.read_bytes() for f in prebuilt]
    ratio_bytes = sum(map(len, ours)) / sum(map(len, theirs))
    ratio_gzip = sum(map(gzip_size, ours)) / sum(map(gzip_size, theirs))
    assert ratio_bytes <= 0.5 and ratio_gzip <= 0.5, (ratio_bytes, ratio_gzip, counted)


def test_boot_compiles_the_binary_the_backend_would_pick(page: Any, site: str) -> None:
    """boot.js's SIMD test and TFJS's agree, so the early module is the one the backend asks for."""
    page.goto(site)
    page.wait_for_selector("body[data-state=ready]")
    assert page.evaluate("deploykitBoot.backend") == "wasm"  # no parity record: boot and app.js both start wasm
    boot_url = page.evaluate("deploykitBoot.wasm.then(w => w.url)")
    simd = page.evaluate("deploykit.backend() === 'wasm' && import('./vendor/tfjs.js').then(tf => tf.env().getAsync('WASM_HAS_SIMD_SUPPORT'))")
    assert boot_url.endswith("/vendor/tfjs-backend-wasm-simd.wasm" if simd else "/vendor/tfjs-backend-wasm.wasm")


def test_cpu_query_preloads_the_cpu_backend_and_skips_wasm(page: Any, site: str, boston: dict[str, Any]) -> None:
    page.goto(f"{site}?backend=cpu&{QUERY}")
    assert rel_err(prediction(page), boston["keras"]) <= REL
    assert page.evaluate("deploykit.backend()") == "cpu"
    counts = fetched(page)
    assert not [p for p in counts if p.endswith(".wasm")], counts
    assert counts["/vendor/backend-cpu.js"] == 1, counts
    preloaded = page.eval_on_selector_all("link[rel=modulepreload]", "ls => ls.map(l => l.getAttribute('href'))")
    assert "./vendor/backend-cpu.js" in preloaded
    assert not page.log.errors


def test_wasm_served_without_its_mime_type_still_runs_on_wasm(page: Any, site: str, boston: dict[str, Any]) -> None:
    """compileStreaming needs application/wasm; without it the page compiles the bytes boot.js fetched (after
    their sha256 check), so the binary is still fetched once."""

    def octet_stream(route: Any) -> None:
        res = route.fetch()
        route.fulfill(response=res, headers={**res.headers, "content-type": "application/octet-stream"})

    page.route("**/*.wasm", octet_stream)
    page.goto(f"{site}?{QUERY}")
    assert rel_err(prediction(page), boston["keras"]) <= REL
    assert page.evaluate("deploykit.backend()") == "wasm"
    assert page.evaluate("deploykitBoot.wasm.then(w => w.module).then(() => 'compiled', () => 'refused')") == "refused"
    wasm = {p: n for p, n in fetched(page).items() if p.endswith(".wasm")}
    assert list(wasm.values()) == [1], wasm  # boot.js's fetch, checked and compiled by app.js


def test_model_elsewhere_than_boot_guessed_is_loaded_from_the_manifest(page: Any, site: str, boston: dict[str, Any]) -> None:
    """The manifest decides: a graph model at another path (listed with its sha256s) is fetched there, and used."""
    manifest = copy.deepcopy(boston["manifest"])
    graph = next(a for a in manifest["artifacts"] if a["format"] == "tfjs_graph")
    graph["path"] = graph["path"].replace("/graph/", "/graph-copy/")
    for rel in [p for p in manifest["files"] if p.startswith("web/model/graph/")]:
        manifest["files"][rel.replace("/graph/", "/graph-copy/")] = manifest["files"][rel]
    graph_dir = boston["bundle"] / "web" / "model" / "graph"
    page.route("**/model/graph-copy/*", lambda route: route.fulfill(
        body=(graph_dir / urlparse(route.request.url).path.rsplit("/", 1)[1]).read_bytes()))
    page.route("**/manifest.json", lambda route: route.fulfill(json=manifest))
    page.goto(f"{site}?{QUERY}")
    assert rel_err(prediction(page), boston["keras"]) <= REL
    urls = [u for u in page.log.requests if "/model/graph-copy/" in u]
    assert any(u.endswith("/model/graph-copy/model.json") for u in urls), urls
    assert any(u.endswith(".bin") for u in urls), urls
    assert not page.log.errors
