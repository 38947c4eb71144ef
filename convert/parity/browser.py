"""Run TFJS artifacts in real headless Chromium (Playwright) on the cpu, wasm and webgl backends.

One browser and one loopback static server serve every bundle of a run. Each bundle is mounted under
``/b/<n>/``. The TFJS graph model runs on the bundle's own page, ``web/index.html`` (its own app.js and
vendor files, with its integrity checks), through ``window.deploykit.checkInputs``: the code path of its
"Check this device" button, including the page's input transforms. The layers harness loads TFJS 4.22's
full ``tf.min.js`` (which has ``loadLayersModel``; the page does not load layers models) from
``web/node_modules``, and gets inputs after ``edge.transform.apply``. Each run records the backend TFJS
actually used, ``tf.version`` and the user agent.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from convert import interrupt
from edge import transform
from convert.errors import DeployKitError

BACKENDS = ("cpu", "wasm", "webgl")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--use-angle=swiftshader", "--enable-unsafe-swiftshader"]
TIMEOUT_MS = 120_000

LAYERS_HARNESS = """<!doctype html><html><head><meta charset="utf-8"><title>deploykit parity (layers)</title>
<link rel="icon" href="data:,"></head><body>
<script src="/__tfjs/tf.min.js"></script><script src="/__tfjs-wasm/tf-backend-wasm.min.js"></script>
<script>
tf.wasm.setWasmPaths("/__tfjs-wasm/");
tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
const models = new Map();
window.parityRun = async (req) => {
  const ok = await tf.setBackend(req.backend);
  await tf.ready();
  if (!ok) throw new Error(`backend ${req.backend} cannot start in this browser`);
  const key = req.url + "|" + tf.getBackend();
  if (!models.has(key)) models.set(key, await tf.loadLayersModel(req.url));
  const model = models.get(key);
  const xs = req.inputs.map((x) => tf.tensor(x.data, x.shape, x.dtype));
  let ys = model.predict(xs.length === 1 ? xs[0] : xs);
  if (!Array.isArray(ys)) ys = [ys];
  try {
    const outs = [];
    for (const y of ys) outs.push({data: Array.from(await y.data()), shape: y.shape});
    return {backend: tf.getBackend(), version: tf.version.tfjs, userAgent: navigator.userAgent, outputs: outs,
            float32: tf.getBackend() === "webgl" ? tf.env().getBool("WEBGL_RENDER_FLOAT32_ENABLED") : null};
  } finally { tf.dispose(ys); tf.dispose(xs); }
};
window.parityReady = true;
</script></body></html>
"""


def node_modules() -> Path:
    """``web/node_modules`` of the source tree (holds TFJS 4.22's full build for layers models)."""
    return Path(__file__).resolve().parents[2] / "web" / "node_modules" / "@tensorflow"


def find_chromium() -> str | None:
    """The system's Chromium on PATH (used when Playwright has no browser of its own): Debian's
    ``chromium-headless-shell`` first, the headless-only build of the same Chromium that Playwright itself runs
    headless (the same Blink, V8 and SwiftShader WebGL; tests/web's page and backend tests: 12 s of CPU against
    20 s for the full ``chromium``, whose Debian wrapper also adds ``--enable-gpu-rasterization``), else
    ``chromium``."""
    for name in ("chromium-headless-shell", "chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None


class _Server:
    """A loopback static server: ``/b/<n>/...`` -> bundle n, ``/__tfjs*/`` -> node_modules, harness pages."""

    def __init__(self) -> None:
        self.mounts: dict[str, Path] = {}
        server_self = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                              ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
                              ".json": "application/json"}

            def log_message(self, *args: Any) -> None:
                pass

            def translate_path(self, path: str) -> str:
                return server_self.translate(path)

            def do_GET(self) -> None:  # noqa: N802
                page = server_self.page(self.path)
                if page is None:
                    return super().do_GET()
                body = page.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def mount(self, bundle: Path) -> str:
        key = str(Path(bundle).resolve())
        for prefix, path in self.mounts.items():
            if str(path) == key:
                return prefix
        prefix = f"/b/{len(self.mounts)}"
        self.mounts[prefix] = Path(key)
        return prefix

    def page(self, url: str) -> str | None:
        path = url.split("?", 1)[0]
        if path == "/__parity/layers.html":
            return LAYERS_HARNESS
        return None

    def translate(self, url: str) -> str:
        from urllib.parse import unquote

        path = unquote(url.split("?", 1)[0].split("#", 1)[0])
        parts = [p for p in path.split("/") if p]
        if ".." in parts or not parts:
            return "/nonexistent"
        if parts[0] == "__tfjs":
            return str(node_modules() / "tfjs" / "dist" / "/".join(parts[1:]))
        if parts[0] == "__tfjs-wasm":
            return str(node_modules() / "tfjs-backend-wasm" / "dist" / "/".join(parts[1:]))
        if parts[0] == "b" and len(parts) >= 2 and f"/b/{parts[1]}" in self.mounts:
            return str(self.mounts[f"/b/{parts[1]}"].joinpath(*parts[2:]))
        return "/nonexistent"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class Browser:
    """One headless Chromium + loopback server for a whole parity run; use as a context manager.

    Raises (from ``start``):
        DeployKitError: Playwright is not installed or Chromium cannot be launched (says how to install).
    """

    def __init__(self) -> None:
        self._pw = None
        self._browser = None
        self._server: _Server | None = None
        self._pages: dict[str, tuple[Any, str]] = {}  # kind -> (page, url loaded)
        self.executable: str | None = None

    def __enter__(self) -> "Browser":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise DeployKitError("the chromium runtimes need Playwright; pip install playwright "
                                 "(and apt install chromium), or leave chromium-* out with --runtimes") from None
        self._pw = sync_playwright().start()
        errors = []
        try:
            self._browser = self._pw.chromium.launch(args=CHROMIUM_ARGS)  # Playwright's own browser, if any
            self.executable = "playwright"
        except Exception as exc:  # noqa: BLE001 - fall back to the system chromium
            interrupt.check()  # Ctrl+C also stops Playwright's driver, which Playwright reports as an error
            errors.append(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            exe = find_chromium()
            if exe is None:
                self.close()
                raise DeployKitError("no Chromium to run TFJS in: install Debian's chromium (apt install chromium) or "
                                     "run `playwright install chromium`; or leave chromium-* out with --runtimes") from None
            try:
                self._browser = self._pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
                self.executable = exe
            except Exception as exc2:  # noqa: BLE001
                interrupt.check()
                self.close()
                first = str(exc2).strip().splitlines()[0] if str(exc2).strip() else type(exc2).__name__
                raise DeployKitError(f"cannot launch Chromium {exe} ({first}); reinstall it (apt install chromium) "
                                     "or leave chromium-* out with --runtimes") from None
        self._server = _Server()

    def close(self) -> None:
        for page, _ in self._pages.values():
            try:
                page.close()
            except Exception:  # noqa: BLE001
                pass
        self._pages.clear()
        if self._browser is not None:
            try:
                self._browser.close()
            except Exception:  # noqa: BLE001
                pass
            self._browser = None
        if self._pw is not None:
            self._pw.stop()
            self._pw = None
        if self._server is not None:
            self._server.close()
            self._server = None

    def _page(self, kind: str, bundle: Path, backend: str, version: str = "") -> tuple[Any, str]:
        assert self._server is not None and self._browser is not None, "Browser.start() first"
        prefix = self._server.mount(bundle)
        if kind == "tfjs_layers":
            if not (node_modules() / "tfjs" / "dist" / "tf.min.js").is_file():
                raise DeployKitError("running TFJS layers models needs TFJS's full build: run `npm ci` in web/ "
                                     "(web/node_modules/@tensorflow/tfjs/dist/tf.min.js is missing)")
            url, ready = f"{self._server.base}/__parity/layers.html", "window.parityReady === true"
        else:
            # The bundle's page starts on the requested backend; checkInputs switches backends later.
            if not (Path(bundle) / "web" / "index.html").is_file():
                raise DeployKitError(f"{bundle} has no web/index.html: re-create the bundle with `deploykit convert`")
            url = f"{self._server.base}{prefix}/web/index.html?backend={backend}#{version}"
            ready = "window.deploykit && typeof window.deploykit.checkInputs === 'function' || " \
                    "document.body && document.body.dataset.state === 'error'"
        page, loaded = self._pages.get(kind, (None, ""))
        if page is None:
            page = self._browser.new_page()
            page.set_default_timeout(TIMEOUT_MS)
        if loaded.split("?", 1)[0] != url.split("?", 1)[0] or loaded.split("#", 1)[-1] != url.split("#", 1)[-1]:
            page.goto(url)
            page.wait_for_function(ready, timeout=60_000)
        self._pages[kind] = (page, url)
        return page, f"{self._server.base}{prefix}"

    def run(self, bundle: Path, artifact: Mapping[str, Any], manifest: Mapping[str, Any], backend: str,
            inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Run one TFJS artifact on one backend.

        ``inputs`` are the model's inputs before the artifact's input_transform: the page applies it for a
        graph model (as it does for a user), this module for a layers model.

        Returns ``{"outputs": {key: array}, "backend": used, "version": tfjs, "user_agent": ua, ...}``.

        Raises:
            DeployKitError: the page reports an error (model cannot load, an op is missing, ...), or the
                graph model is not the one the bundle's page runs.
        """
        if artifact["format"] == "tfjs_graph":
            # (the page is reloaded when the bundle's manifest changed since it was loaded)
            version = hashlib.sha256(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:16]
            page, _ = self._page("tfjs_graph", bundle, backend, version)
            page_model = _page_artifact(manifest)
            if page_model is None:
                raise DeployKitError(f"the bundle's page runs no graph model: {artifact['path']} was rejected by convert")
            if artifact["path"] != page_model:
                raise DeployKitError(f"the bundle's page runs {page_model}, not {artifact['path']}; re-create the bundle")
            nested = {spec["name"]: np.asarray(inputs[spec["name"]]).tolist() for spec in manifest["inputs"]}
            script = ("([backend, inputs]) => window.deploykit ? window.deploykit.checkInputs(backend, inputs) : "
                      "Promise.reject(new Error(document.getElementById('load-status').textContent.replace(/^Error: /, '')))")
            request = [backend, nested]
        else:
            page, base = self._page(artifact["format"], bundle, backend)
            script, request = "(req) => window.parityRun(req)", self._layers_request(base, artifact, manifest, backend, inputs)
        try:
            result = page.evaluate(script, request)
        except Exception as exc:  # noqa: BLE001 - Playwright wraps the page's Error
            interrupt.check()
            text = str(exc).strip().splitlines()
            first = next((line for line in text if line.strip()), type(exc).__name__)
            for prefix in ("Page.evaluate: ", "Error: "):
                first = first[len(prefix):] if first.startswith(prefix) else first
            raise DeployKitError(f"TFJS {backend} cannot run {artifact['path']}: {' '.join(first.split())[:300]}") from None
        outs = result["outputs"]
        if len(outs) != len(manifest["outputs"]):
            raise DeployKitError(f"TFJS {backend} returned {len(outs)} outputs for {artifact['path']}, "
                                 f"the manifest lists {len(manifest['outputs'])}; re-create the bundle")
        arrays = {o["key"]: np.asarray(out["data"], dtype=np.float64).reshape(out["shape"])
                  for o, out in zip(manifest["outputs"], outs)}
        return {"outputs": arrays, "backend": result["backend"], "version": result["version"],
                "user_agent": result["userAgent"], "webgl_float32": result.get("float32")}

    @staticmethod
    def _layers_request(base: str, artifact: Mapping[str, Any], manifest: Mapping[str, Any], backend: str,
                        inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """The layers harness's request: inputs after the artifact's input_transform, as float32 or int32."""
        feeds = transform.apply(artifact.get("input_transform") or [], inputs)
        payload = []
        for spec in manifest["inputs"]:
            x = np.asarray(feeds[spec["name"]])
            integer = spec["dtype"].startswith(("int", "uint")) or spec["dtype"] == "bool"
            payload.append({"name": spec["name"], "data": (x.astype(np.int64) if integer else x.astype(np.float32)).ravel().tolist(),
                            "shape": list(x.shape), "dtype": "int32" if integer else "float32"})
        return {"url": f"{base}/{artifact['path']}", "backend": backend, "inputs": payload}


def _page_artifact(manifest: Mapping[str, Any]) -> str | None:
    """The graph model the page runs (web/src/backends.js ``pageArtifactPath``): the first one not rejected."""
    graphs = [a for a in manifest.get("artifacts") or [] if a.get("format") == "tfjs_graph"]
    return next((str(a["path"]) for a in graphs if a.get("status") != "rejected"), None)
