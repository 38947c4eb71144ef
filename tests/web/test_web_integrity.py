"""The page checks what it loads (issue 13, item 8): every file it fetches is same-origin, listed in
manifest.json with its sha256 and checked (SubtleCrypto) before use; a mismatch is an error on the page,
never a prediction.

Run: .venv/bin/python -m pytest tests/web/test_web_integrity.py -m browser
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest

from web_helpers import open_ready

pytestmark = pytest.mark.browser
SHARD = "web/model/graph/group1-shard1of1.bin"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def serve(boston: dict[str, Any], tmp_path: Path, serve_folder: Any) -> Callable[[Callable[[Path], None]], str]:
    """serve(tamper) -> URL of a tampered copy of the bundle's web folder on its own localhost server."""
    copies = iter(range(1000))

    def start(tamper: Callable[[Path], None]) -> str:
        bundle = tmp_path / f"bundle{next(copies)}"
        shutil.copytree(boston["bundle"], bundle)
        tamper(bundle)
        return serve_folder(bundle)

    return start


def _error(page: Any) -> str:
    page.wait_for_selector("body[data-state=error]")
    return page.inner_text("#load-status")


def _rewrite_manifest(bundle: Path, edit: Callable[[dict], None]) -> None:
    manifest = json.loads((bundle / "manifest.json").read_text())
    edit(manifest)
    for where in (bundle / "manifest.json", bundle / "web" / "manifest.json"):
        where.write_text(json.dumps(manifest, indent=2))


def test_the_untampered_page_lists_and_checks_every_file_it_fetches(page: Any, site: str, boston: dict[str, Any]) -> None:
    open_ready(page, site)
    page.click("#check-button")
    assert page.wait_for_selector("#check-verdict").get_attribute("data-passed") == "true"
    manifest = boston["manifest"]
    listed = {a["path"] for a in manifest["artifacts"]} | set(manifest["files"])
    fetched = {"web/" + url[len(site):].split("?")[0] for url in page.log.requests if url.startswith(site)}
    data = {p for p in fetched if not p.endswith((".js", ".css", ".html", ".ico", "web/", "web/manifest.json"))}
    assert data and data <= listed, sorted(data - listed)
    assert {SHARD, "web/golden.json", "web/model/graph/model.json"} <= data
    assert any(p.endswith(".wasm") for p in data)
    assert not page.log.errors


def test_a_flipped_weight_byte_is_an_error_not_a_prediction(page: Any, serve) -> None:
    state = {}

    def flip(bundle: Path) -> None:
        shard = bundle / SHARD
        data = bytearray(shard.read_bytes())
        state["want"] = _sha(bytes(data))
        data[len(data) // 2] ^= 0x01
        shard.write_bytes(bytes(data))
        state["got"] = _sha(bytes(data))

    page.goto(serve(flip))
    assert _error(page) == (f"Error: Integrity check failed: {SHARD} does not match its sha256 in manifest.json "
                            f"(expected {state['want'][:12]}…, got {state['got'][:12]}…). Nothing was run with it: "
                            "copy the bundle again.")
    assert page.evaluate("document.querySelector('#predict-form').hidden")


def test_a_weight_file_on_another_origin_is_never_fetched(page: Any, serve, tmp_path: Path) -> None:
    """model.json names a shard on another origin (and the manifest agrees): refused before any request."""
    from convert.serve_web import serve_in_thread

    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "evil.bin").write_bytes(b"\0" * 64)
    other, other_url = serve_in_thread(tmp_path / "elsewhere")
    evil = other_url + "evil.bin"
    try:
        def elsewhere(bundle: Path) -> None:
            path = bundle / "web/model/graph/model.json"
            model = json.loads(path.read_text())
            model["weightsManifest"][0]["paths"] = [evil]
            path.write_text(json.dumps(model))

            def edit(manifest: dict) -> None:
                graph = next(a for a in manifest["artifacts"] if a["format"] == "tfjs_graph")
                graph["sha256"], graph["bytes"] = _sha(path.read_bytes()), path.stat().st_size
                manifest["files"][evil] = _sha(b"\0" * 64)

            _rewrite_manifest(bundle, edit)

        page.goto(serve(elsewhere))
        assert _error(page) == (f"Error: Refusing {evil}: it is on another site, and the page loads only its own "
                                "bundle's files.")
        assert not [url for url in page.log.requests if url.startswith(other_url)]
    finally:
        other.shutdown()
        other.server_close()


def test_an_unlisted_weight_file_is_refused(page: Any, serve) -> None:
    page.goto(serve(lambda bundle: _rewrite_manifest(bundle, lambda m: m["files"].pop(SHARD))))
    assert _error(page) == (f"Error: {SHARD} is not listed in manifest.json with a sha256, so the page will not use "
                            "it: re-create the bundle.")


def test_a_changed_wasm_binary_is_an_error_not_a_fallback(page: Any, serve) -> None:
    def change(bundle: Path) -> None:
        for wasm in (bundle / "web" / "vendor").glob("*.wasm"):
            wasm.write_bytes(wasm.read_bytes() + b"\0")

    page.goto(serve(change))
    text = _error(page)
    assert text.startswith("Error: Integrity check failed: web/vendor/tfjs-backend-wasm"), text
    assert "Using cpu instead" not in text


def test_a_changed_golden_json_fails_the_device_check(page: Any, serve) -> None:
    def change(bundle: Path) -> None:
        golden = bundle / "web" / "golden.json"
        golden.write_text(golden.read_text() + " ")  # the same numbers: only the hash can tell

    open_ready(page, serve(change))
    page.click("#check-button")
    page.wait_for_function("document.querySelector('#load-status').textContent.startsWith('Error:')")
    assert page.inner_text("#load-status").startswith(
        "Error: Integrity check failed: web/golden.json does not match its sha256 in manifest.json")
    assert page.query_selector("#check-verdict") is None


# --------------------------------------------------------------------------- the page's own code (SRI)

REFUSED = "Error: the browser refused {file}: it does not match its sha384 in index.html. Nothing was run: copy the bundle again."


def _append(path: Path, text: str = "\n;globalThis.tampered = true;\n") -> None:
    path.write_text(path.read_text() + text)


def test_every_script_and_stylesheet_has_its_sha384_and_the_manifest_lists_every_file(boston: dict[str, Any]) -> None:
    import base64
    import re

    web = boston["bundle"] / "web"
    html = (web / "index.html").read_text()
    sri = lambda rel: "sha384-" + base64.b64encode(hashlib.sha384((web / rel).read_bytes()).digest()).decode()  # noqa: E731
    linked = re.findall(r'<(?:script|link)\b[^>]*?\sintegrity="([^"]+)"\s(?:src|href)="\./([^"]+)"', html)
    assert {rel for _, rel in linked} == {"style.css", "vendor/tfjs.js", "app.js"}
    assert all(value == sri(rel) for value, rel in linked)
    imports = json.loads(re.search(r'<script type="importmap">(.*?)</script>', html).group(1))["integrity"]
    scripts = sorted(p.relative_to(web).as_posix() for p in web.rglob("*.js"))
    assert sorted(k[2:] for k in imports) == scripts and "vendor/backend-cpu.js" in scripts
    assert all(imports["./" + rel] == sri(rel) for rel in scripts)
    # index.html (which holds those hashes) and every other file the page ships is in the bundle's sha256 list
    manifest = boston["manifest"]
    listed = set(manifest["files"]) | {a["path"] for a in manifest["artifacts"]}
    shipped = {"web/" + p.relative_to(web).as_posix() for p in web.rglob("*") if p.is_file()} - {"web/manifest.json"}
    assert shipped <= listed, sorted(shipped - listed)
    assert manifest["files"]["web/index.html"] == _sha((web / "index.html").read_bytes())


@pytest.mark.parametrize("file", ["app.js", "vendor/tfjs.js"])
def test_a_changed_script_is_refused_with_a_clear_error(page: Any, serve, file: str) -> None:
    page.goto(serve(lambda bundle: _append(bundle / "web" / file)))
    # (the error state comes once the page has hashed app.js and vendor/tfjs.js again to name the file)
    assert _error(page) == REFUSED.format(file=file)
    assert page.evaluate("typeof window.deploykit") == "undefined"  # app.js never ran
    assert page.evaluate("globalThis.tampered === undefined")
    assert any("integrity" in e.lower() for e in page.log.errors), page.log.errors


def test_a_missing_script_is_named(page: Any, serve) -> None:
    page.goto(serve(lambda bundle: (bundle / "web" / "vendor" / "tfjs.js").unlink()))
    assert _error(page) == ("Error: the browser refused vendor/tfjs.js: it is missing (HTTP 404). "
                                               "Nothing was run: copy the bundle again.")


def test_a_changed_lazy_backend_is_refused_not_a_fallback(page: Any, serve) -> None:
    page.goto(serve(lambda bundle: _append(bundle / "web" / "vendor" / "backend-cpu.js")) + "?backend=cpu")
    assert _error(page) == ("Error: The browser refused vendor/backend-cpu.js (or a file it imports): it is missing "
                            "or does not match its sha384 in index.html. Nothing was run with it: copy the bundle again.")
    assert page.evaluate("globalThis.tampered === undefined")
