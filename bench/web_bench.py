"""Side-by-side benchmark of the web page: our esbuild bundle vs the same page built on tf.min.js.

One run measures, for both pages, on localhost in headless Chromium:
  * page weight: every file the browser fetched up to the first prediction on wasm (HTML, CSS, JS, wasm,
    manifest, model), raw bytes and gzip (level 6, the usual server default);
  * navigation to first prediction: the page is opened with ?rm=6&tax=250&age=66.5, which fills the form
    and predicts as soon as the model is ready; the figure is the page's own
    performance mark 'deploykit:first-prediction' (ms since navigation start), median of N fresh contexts,
    the two pages taking turns (so load from other jobs on the machine falls on both alike);
  * per-prediction time: mean of 1,000 predictions of one row through the page's runModel (input tensor,
    execute, read back, dispose), after warm-up, on every backend.

The tf.min.js page is our page with vendor/ replaced by tf.min.js + tf-backend-wasm.min.js (same
app.js, same HTML, same model), so the difference is the TFJS packaging only. (One consequence: the wasm
module the page's start-up script compiles early can only be handed to our bundle's wasm backend; on the
tf.min.js page TFJS fetches and compiles the binary again.)

Usage:
  .venv/bin/python bench/web_bench.py [--bundle BUNDLE] [--runs 7] [--json test-artifacts/web_bench.json]
Without --bundle it trains and converts the Boston MLP with the real CLI into a temporary folder.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
sys.path.insert(0, str(ROOT))

BACKENDS = ["wasm", "cpu", "webgl"]
QUERY = "rm=6&tax=250&age=66.5"

TFMIN_SHIM = """// tf.min.js variant of vendor/tfjs.js: re-export the globals of the classic scripts.
const tf = globalThis.tf;
export const { getBackend, setBackend, ready, tensor, tidy, memory, dispose, engine, env, version_core,
  findBackend, io, loadGraphModel, version_converter } = tf;
export const setWasmPaths = tf.wasm.setWasmPaths;
export const version_wasm = tf.wasm.version_wasm;
"""


def run(cmd: list[str], cwd: Path = ROOT) -> None:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
    res = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True)
    if res.returncode != 0:
        raise SystemExit(f"Error: {' '.join(cmd)} failed: {res.stderr.strip().splitlines()[-1:]}")


def make_bundle(work: Path) -> Path:
    run([sys.executable, "-m", "convert", "train", "--model", "mlp", "--out", str(work / "m.keras")])
    run([sys.executable, "-m", "convert", "convert", str(work / "m.keras"), "--data", "convert/data/boston.csv",
         "--target", "medv", "--out", str(work / "bundle")])
    return work / "bundle"


def make_sites(bundle: Path, work: Path) -> dict[str, Path]:
    """Two web roots with the same model, manifest, HTML and app.js: ours, and one on tf.min.js."""
    run(["npm", "run", "build"], cwd=WEB)
    dist = WEB / "dist"
    ours = work / "ours"
    shutil.copytree(bundle / "web", ours)
    shutil.rmtree(ours / "vendor")
    shutil.copytree(dist, ours, dirs_exist_ok=True)

    tfmin = work / "tfmin"
    shutil.copytree(ours, tfmin)
    shutil.rmtree(tfmin / "vendor")
    vendor = tfmin / "vendor"
    vendor.mkdir()
    nm = WEB / "node_modules" / "@tensorflow"
    shutil.copy(nm / "tfjs" / "dist" / "tf.min.js", vendor)
    shutil.copy(nm / "tfjs-backend-wasm" / "dist" / "tf-backend-wasm.min.js", vendor)
    for wasm in (nm / "tfjs-backend-wasm" / "dist").glob("*.wasm"):
        shutil.copy(wasm, vendor)
    (vendor / "tfjs.js").write_text(TFMIN_SHIM)
    (vendor / "backend-cpu.js").write_text("export const version_cpu = globalThis.tf.version_cpu;\n")
    (vendor / "backend-webgl.js").write_text("export const version_webgl = globalThis.tf.version_webgl;\n")
    for chunk in (dist / "vendor").glob("chunk-*.js"):  # preloaded by boot.js for ?backend=cpu|webgl: no 404s
        (vendor / chunk.name).write_text("export {};\n")
    html = (tfmin / "index.html").read_text()
    # Drop the <link rel="modulepreload"> tags only (there is no vendor/tfjs.js module here). Not whole lines
    # that mention modulepreload: the inlined start-up script does too, and the tf.min.js page keeps it.
    html, n = re.subn(r'\n[ \t]*<link rel="modulepreload"[^>]*>', "", html)
    assert n == 1 and "deploykitBoot" in html, "index.html changed: update make_sites"
    # The import map pins the esbuild page's vendor/*.js by sha384; the shims here are other files.
    html, n = re.subn(r'\n[ \t]*<script type="importmap">.*?</script>', "", html)
    assert n == 1, "index.html changed: update make_sites"
    app = re.search(r'  <script type="module"[^>]* src="./app.js"[^>]*></script>', html)
    assert app, "index.html changed: update make_sites"
    html = html.replace(
        app.group(0),
        '  <script src="./vendor/tf.min.js"></script>\n  <script src="./vendor/tf-backend-wasm.min.js"></script>\n'
        + app.group(0),
    )
    (tfmin / "index.html").write_text(html)
    return {"esbuild page": ours, "tf.min.js page": tfmin}


GOAL_KINDS = ("html", "js", "wasm", "model")  # what the page-weight goal counts (≤ 50 % of the tf.min.js page)


def kind(path: str) -> str:
    if path.endswith(".wasm"):
        return "wasm"
    if path.endswith(".js"):
        return "js"
    if "/model/" in path:
        return "model"
    if path.endswith(".html") or path.endswith("/"):
        return "html"
    if path.endswith(".css"):
        return "css"
    return "json"


def weight(root: Path, paths: list[str]) -> dict[str, Any]:
    by_kind: dict[str, list[int]] = {}
    files = []
    for p in sorted(set(paths)):
        rel = p.lstrip("/") or "index.html"
        if rel.endswith("/"):
            rel += "index.html"
        data = (root / rel).read_bytes()
        gz = len(gzip.compress(data, compresslevel=6, mtime=0))
        files.append({"path": rel, "bytes": len(data), "gzip": gz})
        k = kind(p)
        by_kind.setdefault(k, [0, 0])
        by_kind[k][0] += len(data)
        by_kind[k][1] += gz
    total = [sum(f["bytes"] for f in files), sum(f["gzip"] for f in files)]
    return {"files": files, "by_kind": by_kind, "bytes": total[0], "gzip": total[1]}


PER_PREDICTION_JS = """async () => {
    const row = [[6, 250, 66.5]];
    for (let i = 0; i < 50; i++) await deploykit.runRows(row);
    const t0 = performance.now();
    for (let i = 0; i < 1000; i++) await deploykit.runRows(row);
    return (performance.now() - t0) / 1000;
}"""


def measure(browser: Any, sites: dict[str, tuple[str, Path]], runs: int) -> dict[str, dict[str, Any]]:
    """Every page, backend by backend, the pages taking turns run by run (A B A B ..., not A A .. B B ..),
    so a change in machine load during the run (other jobs on a shared box) hits both pages alike."""
    results: dict[str, dict[str, Any]] = {
        name: {"first_prediction_ms": {}, "ready_ms": {}, "per_prediction_ms": {}, "backend_in_use": {}} for name in sites
    }
    paths: dict[str, list[str]] = {name: [] for name in sites}
    for backend in BACKENDS:
        firsts: dict[str, list[float]] = {name: [] for name in sites}
        readies: dict[str, list[float]] = {name: [] for name in sites}
        for i in range(runs):
            for name, (url, _root) in sites.items():
                ctx = browser.new_context()
                page = ctx.new_page()
                reqs: list[str] = []
                page.on("request", lambda r: reqs.append(r.url))
                page.goto(f"{url}?{QUERY}&backend={backend}")
                page.wait_for_selector("#prediction[data-value]", timeout=120_000)
                marks = page.evaluate(
                    "Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))"
                )
                firsts[name].append(marks["deploykit:first-prediction"])
                readies[name].append(marks["deploykit:ready"])
                if backend == "wasm" and i == 0:
                    paths[name] = [urlparse(u).path for u in reqs]
                    hosts = {urlparse(u).hostname for u in reqs}
                    assert hosts == {"127.0.0.1"}, hosts
                if i == runs - 1:
                    results[name]["per_prediction_ms"][backend] = page.evaluate(PER_PREDICTION_JS)
                    results[name]["backend_in_use"][backend] = page.evaluate("deploykit.backend()")
                ctx.close()
        for name in sites:
            f, r = firsts[name], readies[name]
            results[name]["first_prediction_ms"][backend] = {"median": statistics.median(f), "min": min(f), "runs": f}
            results[name]["ready_ms"][backend] = {"median": statistics.median(r), "runs": r}
    for name, (_url, root) in sites.items():
        results[name]["weight"] = weight(root, [p for p in paths[name] if not p.endswith("golden.json")])
    return results


def fmt_bytes(n: int) -> str:
    return f"{n / 1024:,.0f} KiB"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="an existing bundle (default: train + convert one)")
    ap.add_argument("--runs", type=int, default=7, help="navigations per page and backend (default 7)")
    ap.add_argument("--json", type=Path, default=ROOT / "test-artifacts" / "web_bench.json")
    args = ap.parse_args(argv)

    from playwright.sync_api import sync_playwright

    from convert.parity.browser import CHROMIUM_ARGS, find_chromium  # the browser and flags verify runs
    from convert.serve_web import serve_in_thread

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bundle = args.bundle or make_bundle(work)
        sites = make_sites(bundle, work)
        servers = {name: serve_in_thread(root) for name, root in sites.items()}
        results: dict[str, Any] = {}
        try:
            with sync_playwright() as p:
                exe = find_chromium()
                browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else p.chromium.launch(args=CHROMIUM_ARGS)
                # Warm the browser process itself once (not counted).
                warm = browser.new_page()
                warm.goto(servers["esbuild page"][1] + "?" + QUERY)
                warm.wait_for_selector("#prediction[data-value]", timeout=120_000)
                warm.close()
                results = measure(browser, {name: (url, sites[name]) for name, (_s, url) in servers.items()}, args.runs)
                browser.close()
        finally:
            for server, _ in servers.values():
                server.shutdown()
                server.server_close()

    ours, tfmin = results["esbuild page"], results["tf.min.js page"]
    core = [sum(r["weight"]["by_kind"].get(k, [0, 0])[i] for k in GOAL_KINDS) for r in (ours, tfmin) for i in (0, 1)]
    report = {
        "command": "python bench/web_bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "load_avg": os.getloadavg()},
        "results": results,
        "ratios": {
            "weight_bytes": ours["weight"]["bytes"] / tfmin["weight"]["bytes"],
            "weight_gzip": ours["weight"]["gzip"] / tfmin["weight"]["gzip"],
            # issue 4's goal counts HTML + JS + wasm + model (not the manifest and stylesheet, alike on both pages)
            "goal_weight_bytes": core[0] / core[2],
            "goal_weight_gzip": core[1] / core[3],
        },
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))

    print(f"Page weight up to the first prediction (wasm), files fetched: HTML+CSS+JS+wasm+manifest+model")
    print(f"{'':18}{'esbuild page':>26}{'tf.min.js page':>26}{'ratio':>14}")
    kinds = sorted(set(ours["weight"]["by_kind"]) | set(tfmin["weight"]["by_kind"]))
    for k in kinds:
        a = ours["weight"]["by_kind"].get(k, [0, 0])
        b = tfmin["weight"]["by_kind"].get(k, [0, 0])
        print(f"  {k:16}{fmt_bytes(a[0]):>13} ({fmt_bytes(a[1]):>9} gz){fmt_bytes(b[0]):>13} ({fmt_bytes(b[1]):>9} gz)")
    print(f"  {'total':16}{fmt_bytes(ours['weight']['bytes']):>13} ({fmt_bytes(ours['weight']['gzip']):>9} gz)"
          f"{fmt_bytes(tfmin['weight']['bytes']):>13} ({fmt_bytes(tfmin['weight']['gzip']):>9} gz)"
          f"   {report['ratios']['weight_bytes']:.1%} / {report['ratios']['weight_gzip']:.1%} gz")
    print(f"  {'goal files':16}{fmt_bytes(core[0]):>13} ({fmt_bytes(core[1]):>9} gz){fmt_bytes(core[2]):>13}"
          f" ({fmt_bytes(core[3]):>9} gz)   {report['ratios']['goal_weight_bytes']:.1%} /"
          f" {report['ratios']['goal_weight_gzip']:.1%} gz (the goal's files)")
    print()
    print(f"Navigation to first prediction, median of {args.runs} fresh contexts (ms)   [model ready]")
    print(f"{'backend':18}{'esbuild page':>26}{'tf.min.js page':>26}")
    for b in BACKENDS:
        print(f"  {b:16}{ours['first_prediction_ms'][b]['median']:>16.1f} [{ours['ready_ms'][b]['median']:>6.1f}]"
              f"{tfmin['first_prediction_ms'][b]['median']:>17.1f} [{tfmin['ready_ms'][b]['median']:>6.1f}]")
    print()
    print("Per prediction, mean of 1,000 single-row predictions after warm-up (ms)")
    print(f"{'backend':18}{'esbuild page':>26}{'tf.min.js page':>26}")
    for b in BACKENDS:
        print(f"  {b:16}{ours['per_prediction_ms'][b]:>26.4f}{tfmin['per_prediction_ms'][b]:>26.4f}")
    print()
    print(f"load average during the run: {report['machine']['load_avg']}; JSON: {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
