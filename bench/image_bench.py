"""Side-by-side benchmark of image requests (issue 11, "Speed"), in one run.

The model is MobileNetV3Small at 96x96x3 (``weights=None``, 1000 classes, its own Rescaling: raw pixels),
built at bench time and converted (float32 TFLite + TFJS graph) with a labels file. Measured:

* **runner**: one ``deploykit-edge serve`` (float32, loopback, one keep-alive connection, requests one
  after the other), side by side with the interpreter's own ``invoke()`` in this process (same artifact,
  same runtime, input set once): a 96x96 JPEG upload to ``:classify``, a 640x480 JPEG upload (resized on
  the Pi), b64 JSON to ``:classify``, and TF Serving JSON ``instances`` to ``:predict`` (the same tensor as
  text, the old way). Rounds take turns (invoke, then each request kind), medians of every request.
  Each kind is reported as end to end / invoke and as overhead / invoke, the overhead being end to end
  minus the invoke. The goal is on the overhead: the 96x96 JPEG upload's overhead at most 1.5x the invoke
  time (so end to end at most 2.5x the invoke). The server runs
  with the interpreter threads the "auto" rule picks (``edge.runner``), measured here first, and the
  invoke is timed with that count too.
* **spans**: the parts of one upload in this process (Pillow decode, resize + scale, predict, top-k), the
  medians, to say where the time goes; and the whole ``:classify`` handler in-process through ASGI (no
  socket) with the prediction on the event loop (a lone request, what ``edge.server.inference`` does) and
  forced onto the inference thread (what a request does while others are in flight): the hand-off's cost.
* **health under load**: ``/healthz`` latency (p50, p99) while 4 clients (threads of one other process)
  keep ``:classify`` JPEG uploads in flight. The goal: p99 <= 5 ms.
* **page**: navigation to the first image prediction in headless Chromium, per backend (wasm, cpu,
  webgl): the page is opened, a 96x96 JPEG is given to its file picker as soon as it is ready, and the
  figure is the page's own mark ``deploykit:first-image-prediction`` (ms since navigation start);
  median of --page-runs fresh contexts per backend.

    python bench/image_bench.py [--requests 200] [--rounds 3] [--page-runs 3] [--health 400] [--no-page]
                                [--no-health] [--no-spans] [--before-tree PATH]
                                [--bundle DIR] [--json test-artifacts/image_bench.json]

With ``--before-tree PATH`` (another checkout, e.g. ``git worktree add /tmp/before main``) that tree's
server answers the 96x96 JPEG uploads too, request by request in turns with this tree's (one client, one
keep-alive connection each): ``jpeg_upload_96_before``, the side by side of a change on a loaded machine.

The 96x96 upload is timed with two clients in turn: ``http.client`` (``jpeg_upload_96``) and a raw socket
client that sends prebuilt request bytes and reads the answer by its Content-Length
(``jpeg_upload_96_raw``): the difference is the Python client's own work per request, which a device's
real client (another machine) does not add to the server. Both are reported, and the goal against both.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "edge"))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

SIZE = 96
GOAL_OVERHEAD = 1.5  # (end to end - invoke) / invoke, for the 96x96 JPEG upload
BACKENDS = ["wasm", "cpu", "webgl"]


def make_bundle(work: Path) -> Path:
    """MobileNetV3Small 96x96 (weights=None) converted in-process: float32 TFLite + TFJS graph, labels."""
    import keras
    import numpy as np

    from convert.pipeline import ConvertOptions, convert
    from convert.tflite import Variant

    keras.utils.set_random_seed(0)
    model = keras.applications.MobileNetV3Small(input_shape=(SIZE, SIZE, 3), weights=None, classes=1000)
    model.save(work / "mobilenet_v3_small.keras")
    rng = np.random.default_rng(0)
    from convert.reference import load

    input_name = load(work / "mobilenet_v3_small.keras").inputs[0].name
    np.savez(work / "images.npz", **{input_name: rng.uniform(0, 255, (16, SIZE, SIZE, 3)).astype("float32")})
    (work / "labels.txt").write_text("".join(f"class {i}\n" for i in range(1000)))
    convert(ConvertOptions(model=work / "mobilenet_v3_small.keras", data=work / "images.npz", out=work / "bundle",
                           labels=work / "labels.txt", variants=(Variant.FP32,), layers_model=False),
            lambda step: print(f"  {step}", file=sys.stderr))
    return work / "bundle"


def jpeg(width: int, height: int, seed: int = 1) -> bytes:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) * 127 / (width + height)], axis=-1)
    pixels = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype("uint8")  # a photo-like gradient
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def invoke_times(bundle: Path, n: int, threads: int = 1) -> list[float]:
    """The interpreter's own invoke(), input set once (what the model costs, nothing else)."""
    import numpy as np

    from edge.runner import Predictor

    p = Predictor(bundle, "float32", num_threads=threads)
    session = p._session()
    interp = session.interpreter
    detail = interp.get_input_details()[0]
    interp.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=np.float32))
    for _ in range(10):
        interp.invoke()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - t)
    return times


def request_times(port: int, path: str, body: bytes, ctype: str, n: int) -> list[float]:
    """``n`` requests one after the other on one keep-alive connection (after 5 of warm-up): their times."""
    return paired_times([port], path, body, ctype, n)[0]


class TreeServer:
    """``python -m edge serve`` of another checkout (``--before-tree``): its working directory and PYTHONPATH."""

    def __init__(self, tree: Path, bundle: Path, *flags: str) -> None:
        import subprocess

        from edge_helpers import ENV, PYTHON, free_port

        self.port = free_port()
        self.proc = subprocess.Popen([PYTHON, "-m", "edge", "serve", str(bundle), "--port", str(self.port), *flags],
                                     cwd=tree, env={**ENV, "PYTHONPATH": str(tree)}, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server of {tree} exited {self.proc.returncode}: {self.proc.stderr.read()[-2000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/healthz")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the server of {tree} did not answer /healthz in 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(30)
        except Exception:  # noqa: BLE001
            self.proc.kill()


class RawClient:
    """One keep-alive connection that sends prebuilt request bytes and reads the answer by its
    Content-Length: a client with next to no work of its own (``http.client`` builds and parses each
    message in Python, ~0.1-0.3 ms a request here, which is the client's time, not the server's)."""

    def __init__(self, port: int, path: str, body: bytes, ctype: str) -> None:
        import socket

        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n"
                        f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def send(self) -> tuple[int, bytes]:
        """One request: the answer's status and body.

        Raises:
            RuntimeError: the server closed the connection or sent no Content-Length."""
        import re

        self.sock.sendall(self.request)
        data = b""
        while b"\r\n\r\n" not in data:
            part = self.sock.recv(65536)
            if not part:
                raise RuntimeError("the server closed the connection")
            data += part
        head, _, body = data.partition(b"\r\n\r\n")
        found = re.search(rb"\r\ncontent-length: *(\d+)", head, re.IGNORECASE)
        if found is None:
            raise RuntimeError(f"no Content-Length in {head[:200]!r}")
        while len(body) < int(found.group(1)):
            part = self.sock.recv(65536)
            if not part:
                raise RuntimeError("the server closed the connection")
            body += part
        return int(head[9:12]), body

    def close(self) -> None:
        self.sock.close()


class HttpClient:
    """One keep-alive ``http.client`` connection sending the same request each time (the interface of
    :class:`RawClient`)."""

    def __init__(self, port: int, path: str, body: bytes, ctype: str) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.path, self.body, self.headers = path, body, {"Content-Type": ctype}

    def send(self) -> tuple[int, bytes]:
        """One request: the answer's status and body."""
        self.conn.request("POST", self.path, body=self.body, headers=self.headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def close(self) -> None:
        self.conn.close()


def paired_times(ports: list[int], path: str, body: bytes, ctype: str, n: int,
                 client: type = HttpClient) -> list[list[float]]:
    """``n`` requests to each server, taking turns request by request (one keep-alive connection each, a
    ``client``: :class:`HttpClient` or :class:`RawClient`), so that a loaded machine's slow spells hit both
    alike; the times per server, after 5 of warm-up."""
    clients = [client(port, path, body, ctype) for port in ports]
    times: list[list[float]] = [[] for _ in ports]
    try:
        for i in range(n + 5):
            for one, out in zip(clients, times):
                t = time.perf_counter()
                status, data = one.send()
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status} {data[:200]!r}")
                if i >= 5:
                    out.append(time.perf_counter() - t)
    finally:
        for one in clients:
            one.close()
    return times


def runner(bundle: Path, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from edge import images
    from edge_helpers import Server

    name = json.loads((bundle / "manifest.json").read_text())["name"]
    spec = images.image_inputs(json.loads((bundle / "manifest.json").read_text()))[0]
    from edge.runner import Predictor

    small, large = jpeg(SIZE, SIZE), jpeg(640, 480)
    tensor = images.to_tensor(small, spec)[0]
    auto = Predictor(bundle, "float32", num_threads=None)  # the rule serve applies without --threads
    threads = auto.num_threads
    kinds = {
        "jpeg_upload_96": (f"/v1/models/{name}:classify", small, "image/jpeg"),
        "jpeg_upload_640x480": (f"/v1/models/{name}:classify", large, "image/jpeg"),
        "b64_json_classify": (f"/v1/models/{name}:classify",
                              json.dumps({"instances": [{"b64": base64.b64encode(small).decode()}]}).encode(), "application/json"),
        "json_instances_predict": (f"/v1/models/{name}:predict",
                                   json.dumps({"instances": [tensor.tolist()]}).encode(), "application/json"),
    }
    server = Server(bundle, "--variant", "float32", "--max-body", str(4 * 1024 * 1024), "--threads", str(threads))
    samples: dict[str, list[float]] = {"invoke": [], **{k: [] for k in kinds}}
    before = None
    try:
        if args.before_tree is not None:
            before = TreeServer(args.before_tree.resolve(), bundle, "--variant", "float32", "--max-body",
                                str(4 * 1024 * 1024), "--threads", str(threads))
            samples["jpeg_upload_96_before"] = []
            samples["jpeg_upload_96_raw_before"] = []
        samples["jpeg_upload_96_raw"] = []
        for _ in range(args.rounds):
            samples["invoke"] += invoke_times(bundle, args.requests, threads)
            for kind, (path, body, ctype) in kinds.items():
                if kind == "jpeg_upload_96":  # this tree and the other in turns; http.client, then the raw client
                    ports = [server.port] + ([before.port] if before is not None else [])
                    for client, name in ((HttpClient, kind), (RawClient, "jpeg_upload_96_raw")):
                        now, *then = paired_times(ports, path, body, ctype, args.requests, client)
                        samples[name] += now
                        if then:
                            samples[name + "_before"] += then[0]
                    continue
                samples[kind] += request_times(server.port, path, body, ctype, args.requests)
    finally:
        server.stop()
        if before is not None:
            before.stop()
    invoke = statistics.median(samples["invoke"])
    out: dict[str, Any] = {"bytes": {k: len(v[1]) for k, v in kinds.items()}, "threads": threads,
                           "threads_reason": auto.threads_reason}
    for kind, values in samples.items():
        ms = [v * 1000 for v in values]
        median = statistics.median(values)
        out[kind] = {"median_ms": statistics.median(ms), "p90_ms": float(np.percentile(ms, 90)), "n": len(ms),
                     "vs_invoke": median / invoke, "overhead_vs_invoke": (median - invoke) / invoke}
    if before is not None:
        out["before_tree"] = str(args.before_tree)
    out["goal"] = f"jpeg_upload_96 overhead (end to end - invoke) <= {GOAL_OVERHEAD}x invoke"
    out["goal_met"] = out["jpeg_upload_96"]["overhead_vs_invoke"] <= GOAL_OVERHEAD
    out["goal_met_raw_client"] = out["jpeg_upload_96_raw"]["overhead_vs_invoke"] <= GOAL_OVERHEAD
    return out


def spans(bundle: Path, n: int) -> dict[str, Any]:
    """Medians (ms) of the parts of one upload, in this process: decode, resize + scale, predict, top-k."""
    import numpy as np

    from edge import images
    from edge.runner import Predictor

    p = Predictor(bundle, "float32")
    spec = images.image_inputs(p.manifest)[0]
    labels = p.manifest["outputs"][0].get("labels")
    out: dict[str, Any] = {}
    for name, data in (("jpeg_96", jpeg(SIZE, SIZE)), ("jpeg_640x480", jpeg(640, 480))):
        pixels = images.decode(data)
        tensor = images.from_pixels(pixels, spec)
        scores = p.predict({spec.name: tensor})[p.output_keys[0]][0]
        parts = {"decode": lambda: images.decode(data), "resize_scale": lambda: images.from_pixels(pixels, spec),
                 "predict": lambda: p.predict({spec.name: tensor}),
                 "top_k": lambda: images.top_k(np.asarray(scores, dtype=np.float64), labels, 5)}
        times: dict[str, list[float]] = {k: [] for k in parts}
        for _ in range(n):
            for k, fn in parts.items():
                t = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t)
        out[name] = {k: statistics.median(v) * 1000 for k, v in times.items()}
    out["classify_asgi_96"] = handler_spans(bundle, jpeg(SIZE, SIZE), n)
    return out


def handler_spans(bundle: Path, body: bytes, n: int) -> dict[str, float]:
    """Medians (ms) of the whole ``:classify`` handler in-process (ASGI, no socket), the prediction on the
    event loop (a lone request) and forced onto the inference thread, in turns."""
    import asyncio

    from edge.server import ServeConfig, build_app
    from edge_helpers import acall

    app = build_app(ServeConfig(bundle=str(bundle), variant="float32", threads=1))
    app.startup()
    thread = app._executor
    assert thread is not None, "an image model has an inference thread"
    path = f"/v1/models/{app.name}:classify"
    times: dict[str, list[float]] = {"inline": [], "thread": []}

    async def rounds() -> None:
        for i in range(n + 10):
            for kind, threshold in (("inline", float("inf")), ("thread", 0.0)):
                thread.inline_under = threshold  # inf: a lone call is always inline; 0: every call is queued
                t = time.perf_counter()
                status, answer = await acall(app, "POST", path, body, content_type=b"image/jpeg")
                if status != 200:
                    raise RuntimeError(f"{path}: HTTP {status} {answer[:200]!r}")
                if i >= 10:
                    times[kind].append(time.perf_counter() - t)

    try:
        asyncio.run(rounds())
    finally:
        app.shutdown()
    return {f"handler_{k}": statistics.median(v) * 1000 for k, v in times.items()}


_LOAD_CLIENTS = """
import http.client, sys, threading
port, path, body = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
def client():
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    while True:
        conn.request("POST", path, body=body, headers={"Content-Type": "image/jpeg"})
        r = conn.getresponse(); r.read()
        if r.status != 200: raise SystemExit(f"HTTP {r.status}")
threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
[t.start() for t in threads]
print("ready", flush=True)
sys.stdin.read()
"""


def health_under_load(bundle: Path, n: int, threads: int, work: Path) -> dict[str, Any]:
    """/healthz latency while 4 clients (another process) keep JPEG uploads to :classify in flight."""
    import subprocess

    import numpy as np

    from edge_helpers import Server

    name = json.loads((bundle / "manifest.json").read_text())["name"]
    picture = work / "load.jpg"
    picture.write_bytes(jpeg(SIZE, SIZE))
    server = Server(bundle, "--variant", "float32", "--threads", str(threads))
    load = None
    try:
        load = subprocess.Popen([sys.executable, "-c", _LOAD_CLIENTS, str(server.port), f"/v1/models/{name}:classify",
                                 str(picture)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert load.stdout is not None and load.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the four are in flight
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        times = []
        for i in range(n + 10):
            t = time.perf_counter()
            conn.request("GET", "/healthz")
            resp = conn.getresponse()
            resp.read()
            if i >= 10:
                times.append(time.perf_counter() - t)
            time.sleep(0.005)
        conn.close()
        if load.poll() is not None:
            raise RuntimeError(f"the load clients stopped (status {load.returncode})")
    finally:
        if load is not None:
            load.kill()
            load.wait()
        server.stop()
    ms = [v * 1000 for v in times]
    p99 = float(np.percentile(ms, 99))
    return {"n": len(ms), "p50_ms": statistics.median(ms), "p99_ms": p99, "max_ms": max(ms), "goal": "p99 <= 5 ms",
            "goal_met": p99 <= 5.0}


def page(bundle: Path, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from convert.parity.browser import CHROMIUM_ARGS, find_chromium
    from convert.serve_web import serve_in_thread

    picture = work / "picture.jpg"
    picture.write_bytes(jpeg(SIZE, SIZE))
    server, url = serve_in_thread(bundle / "web")
    results: dict[str, Any] = {}
    try:
        with sync_playwright() as p:
            exe = find_chromium()
            browser = p.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS) if exe else p.chromium.launch(args=CHROMIUM_ARGS)
            for backend in BACKENDS:
                firsts, readies, used = [], [], set()
                try:
                    for _ in range(args.page_runs):
                        ctx = browser.new_context()
                        pg = ctx.new_page()
                        pg.goto(f"{url}?backend={backend}")
                        pg.wait_for_selector("body[data-state=ready], body[data-state=error]", timeout=180_000)
                        if pg.get_attribute("body", "data-state") == "error":
                            raise RuntimeError(pg.inner_text("#load-status"))
                        pg.set_input_files("#image-file", str(picture))
                        pg.wait_for_selector("body[data-images='1'], #image-msg.error", timeout=120_000)
                        if pg.get_attribute("body", "data-images") != "1":
                            raise RuntimeError(pg.inner_text("#image-msg"))
                        marks = pg.evaluate("Object.fromEntries(performance.getEntriesByType('mark').map(m => [m.name, m.startTime]))")
                        firsts.append(marks["deploykit:first-image-prediction"])
                        readies.append(marks["deploykit:ready"])
                        used.add(pg.evaluate("deploykit.backend()"))
                        ctx.close()
                except Exception as exc:  # noqa: BLE001 - a backend that fails is reported, the others still run
                    results[backend] = {"error": " ".join(str(exc).split())[:300]}
                    continue
                results[backend] = {"first_image_prediction_ms": statistics.median(firsts), "ready_ms": statistics.median(readies),
                                    "runs": firsts, "backend_in_use": sorted(used)}
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="an existing MobileNetV3Small bundle (default: build one)")
    ap.add_argument("--requests", type=int, default=200, help="requests per kind and round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--page-runs", type=int, default=3)
    ap.add_argument("--health", type=int, default=400, help="/healthz requests under load")
    ap.add_argument("--no-page", action="store_true", help="skip the headless Chromium part")
    ap.add_argument("--no-health", action="store_true", help="skip /healthz under load")
    ap.add_argument("--no-spans", action="store_true", help="skip the in-process spans")
    ap.add_argument("--before-tree", type=Path, metavar="PATH",
                    help="another checkout: its server answers the 96x96 JPEG uploads too, in turns with this tree's")
    ap.add_argument("--json", type=Path, default=ROOT / "test-artifacts" / "image_bench.json")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="deploykit-image-bench-") as tmp:
        work = Path(tmp)
        bundle = args.bundle or make_bundle(work)
        started = time.time()
        load = os.getloadavg()
        result = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)), "load_average_at_start": load,
                  "cpus": os.cpu_count(), "runner": runner(bundle, args)}
        result["spans"] = {} if args.no_spans else spans(bundle, args.requests)
        result["health_under_load"] = ({} if args.no_health else
                                       health_under_load(bundle, args.health, result["runner"]["threads"], work))
        result["page"] = {} if args.no_page else page(bundle, args, work)
        result["load_average_at_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    r = result["runner"]
    print(f"load average {load[0]:.1f} at start, {result['load_average_at_end'][0]:.1f} at end, {result['cpus']} CPUs")
    print(f"runner (median of every request, ms; end to end / invoke; overhead (end to end - invoke) / invoke), "
          f"{r['threads']} interpreter thread(s) ({r['threads_reason']}):")
    shown = ["invoke", *(k for k in ("jpeg_upload_96", "jpeg_upload_96_before", "jpeg_upload_96_raw",
                                      "jpeg_upload_96_raw_before") if k in r),
             "jpeg_upload_640x480", "b64_json_classify", "json_instances_predict"]
    for kind in shown:
        size = f", body {r['bytes'][kind]:,} B" if kind in r["bytes"] else (f", {r['before_tree']}" if kind.endswith("_before") else "")
        print(f"  {kind:24s} {r[kind]['median_ms']:8.3f} ms  p90 {r[kind]['p90_ms']:8.3f}  {r[kind]['vs_invoke']:6.2f}x"
              f"  overhead {r[kind]['overhead_vs_invoke']:6.2f}x{size}")
    print(f"  goal {r['goal']}: {'met' if r['goal_met'] else 'NOT met'} (http.client); "
          f"{'met' if r['goal_met_raw_client'] else 'NOT met'} (jpeg_upload_96_raw: the raw socket client)")
    for name, parts in result["spans"].items():
        what = "the :classify handler via ASGI" if name.startswith("classify_asgi") else "one upload"
        print(f"spans of {what}, {name}, in-process (median ms): " + ", ".join(f"{k} {v:.3f}" for k, v in parts.items()))
    h = result["health_under_load"]
    if h:
        print(f"/healthz with 4 clients uploading: p50 {h['p50_ms']:.2f} ms, p99 {h['p99_ms']:.2f} ms, max {h['max_ms']:.2f} ms "
              f"(n {h['n']}); goal {h['goal']}: {'met' if h['goal_met'] else 'NOT met'}")
    print("page: navigation to first image prediction (median ms; ready in brackets)")
    for backend, v in result["page"].items():
        if "error" in v:
            print(f"  {backend:6s} failed: {v['error']}")
            continue
        print(f"  {backend:6s} {v['first_image_prediction_ms']:8.0f} ms  ({v['ready_ms']:.0f})  ran on {', '.join(v['backend_in_use'])}")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
