"""Side-by-side benchmark of `deploykit-edge serve` (issue 5), in one run.

Three servers answer `POST /predict_json` with `[6, 250, 66.5]`, one after the other, on loopback:

* baseline: the course's service: Flask dev server, Keras `load_model`, `predict_on_batch` on a
  one-row pandas DataFrame per request;
* ceiling:  a bare ASGI app under the same uvicorn (httptools, uvloop, same settings and --workers) that
  returns a constant;
* edge:     `python -m edge serve BUNDLE` (ai-edge-litert / tflite-runtime, no TensorFlow).

The same load generator drives all three: wrk (`apt-get install -y wrk`) when it is on PATH, else an
asyncio client; 8 connections, fixed duration. The ceiling and the edge run side by side and are loaded
in turn, --rounds times (medians reported, every round kept in the JSON), so a slow spell of the machine
hits both alike. Also measured: resident memory of the whole process
tree after loading and after the load, process start to the first 200 (baseline and edge: the median of
1 + --start-repeats starts, taken in turn; the trees' ``edge`` bytecode compiled first, as ``pip install``
does, unless --from-source), and one prediction through the
Python API (edge `Predictor.predict_value`; `predict_row` and `predict_rows` for a batch of one shown too) against Keras
`predict_on_batch` on a one-row DataFrame.

    python bench/edge_bench.py [--bundle B --model M.keras] [--duration 10] [--rounds 5] [--json bench/edge_bench.json]

Without --bundle it trains and converts the Boston MLP with the `deploykit` CLI into a temp folder.

The rollout's cost (issue 14) is measured in the same run, side by side with the single-bundle server
(``edge``): ``edge_canary`` serves ``MODELS/boston/{1,2}`` (the same bundle twice) with a 10 % canary
(routing, the canary's draw, the version headers and ids on every answer); ``edge_shadow`` the same
repository with version 2 shadowing every request (its copies batched to the shadow's worker process, at
the lowest CPU priority; its RSS is in the server's process tree). With ``--before-tree
PATH`` (a checkout of the server before the rollout, e.g. ``git worktree add /tmp/before 574a0ef``),
``edge_before`` runs that tree's single-bundle server too. Goals: the canary server keeps >= 90 % of the
single-bundle server's requests/s, the shadow adds <= 5 % to its p99. RSS per loaded version: the idle
resident memory of a repository of 4 versions minus one of 1, over 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "CUDA_VISIBLE_DEVICES": ""}
BODY = b"[6, 250, 66.5]"
GOALS = {"rps_vs_baseline": 40.0, "rps_vs_ceiling": 0.70, "p99_vs_baseline": 1 / 20, "rss_vs_baseline": 1 / 10,
         "start_vs_baseline": 1 / 10, "api_speedup": 100.0,
         "canary_rps_vs_single": 0.90, "shadow_p99_vs_single": 1.05}

BASELINE_APP = textwrap.dedent('''
    """The course's service, as the course writes it (Flask + Keras + predict_on_batch on a DataFrame)."""
    import sys
    import pandas as pd
    from flask import Flask, jsonify, request
    import keras

    model = keras.models.load_model(sys.argv[1])
    app = Flask(__name__)
    COLUMNS = ["rm", "tax", "age"]

    @app.route("/predict_json", methods=["POST"])
    def predict_json():
        data = request.get_json()
        # TODO: input checks
        df = pd.DataFrame([data], columns=COLUMNS)
        prediction = model.predict_on_batch(df)
        # TODO: output checks, logging
        return jsonify({"prediction": float(prediction[0][0]), "success": True})

    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
''')

CEILING_APP = textwrap.dedent('''
    """A bare ASGI app that answers every request with a constant: the ceiling of the same server."""
    import os
    import sys
    import uvicorn

    BODY = b'{"prediction":22.5,"success":true}'
    HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})

    if __name__ == "__main__":
        workers = int(sys.argv[2]) if len(sys.argv) > 2 else 1
        # The same uvicorn settings as `deploykit-edge serve`, and the same number of worker processes.
        sys.path.insert(0, sys.argv[3])  # the repository, for the same HTTP protocol class as deploykit-edge
        from edge.http_protocol import JsonErrorProtocol
        uvicorn.run(app if workers == 1 else "ceiling:app", host="127.0.0.1", port=int(sys.argv[1]), workers=workers,
                    app_dir=os.path.dirname(os.path.abspath(__file__)), lifespan="on", access_log=False,
                    log_level="warning", server_header=False, date_header=False, http=JsonErrorProtocol)
''')

WRK_LUA = 'wrk.method = "POST"\nwrk.body = "[6, 250, 66.5]"\nwrk.headers["Content-Type"] = "application/json"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_once(port: int, timeout: float = 2.0) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/predict_json", data=BODY,
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        resp.read()
        return resp.status


def median_ci(values: list[float]) -> tuple[float, float, float]:
    """The median and a distribution-free 95 % confidence interval for it (order statistics of the
    binomial; the extremes for fewer than 6 values)."""
    xs = sorted(values)
    n = len(xs)
    k = 0
    for j in range(n // 2, -1, -1):
        if sum(math.comb(n, i) for i in range(j)) / 2 ** n <= 0.025:
            k = j
            break
    lo, hi = (xs[k - 1], xs[n - k]) if k >= 1 else (xs[0], xs[-1])
    return statistics.median(xs), lo, hi


def shadow_counts(port: int) -> dict:
    """The shadow's compared, skipped (not copied while its worker was behind) and dropped copies and its
    failed predictions, from a server's /metrics (empty when it has no shadow)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except OSError:
        return {}
    out = {}
    for what in ("compared", "skipped", "dropped", "errors"):
        m = re.search(rf"^deploykit_shadow_{what}_total{{[^}}]*}} (\S+)$", text, re.M)
        if m:
            out[what] = float(m.group(1))
    return out


def tree_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    total_kb, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            total_kb += int(re.search(r"VmRSS:\s+(\d+)", status).group(1))
        except (OSError, AttributeError):
            pass
        todo += children.get(p, [])
    return total_kb / 1024


def start(cmd: list[str], port: int, timeout: float = 120, env: dict | None = None,
          cwd: Path | None = None) -> tuple[subprocess.Popen, float]:
    """Start a server (in ``cwd``, this repository by default: ``python -m edge`` imports the ``edge`` of its
    working directory first, whatever PYTHONPATH says); return it and the seconds from process start to the
    first 200 on /predict_json.

    Raises:
        RuntimeError: the server exited, or did not answer within ``timeout`` seconds.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd or REPO, env=env or ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd} exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if post_once(port, 1.0) == 200:
                return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.01)
    proc.kill()
    raise RuntimeError(f"{cmd} did not answer in {timeout} s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def load_wrk(port: int, duration: int, connections: int, threads: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
        script = f.name
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", script,
                          f"http://127.0.0.1:{port}/predict_json"], capture_output=True, text=True, check=True).stdout
    os.unlink(script)

    def ms(text: str) -> float:
        value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p99 = ms(re.search(r"\s99%\s+(\S+)", out).group(1))
    p50 = ms(re.search(r"\s50%\s+(\S+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(0) if errors else "", "generator": f"wrk -t{threads} -c{connections}"}


async def _client(port: int, deadline: float, latencies: list[float], bad: list[int]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY))
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
        await reader.readexactly(length)
        latencies.append(time.perf_counter() - t)
        if not head.startswith(b"HTTP/1.1 200"):
            bad.append(1)
        if re.search(rb"(?i)connection:\s*close", head):
            writer.close()
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()


def load_python(port: int, duration: int, connections: int) -> dict:
    latencies: list[float] = []
    bad: list[int] = []

    async def main() -> None:
        deadline = time.perf_counter() + duration
        await asyncio.gather(*[_client(port, deadline, latencies, bad) for _ in range(connections)])

    t0 = time.perf_counter()
    asyncio.run(main())
    elapsed = time.perf_counter() - t0
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "non_2xx": len(bad), "socket_errors": "",
            "generator": f"python asyncio, {connections} connections"}


def load(port: int, args: argparse.Namespace) -> dict:
    if shutil.which("wrk") and not args.python_client:
        return load_wrk(port, args.duration, args.connections, args.wrk_threads)
    return load_python(port, args.duration, args.connections)


def process_cpu_s(pid: int) -> "float | None":
    """The CPU seconds (user + system, all its threads, not its children: the shadow's worker process is
    not in it) a process has used, from /proc; None where there is no /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure_servers(servers: dict[str, tuple], args: argparse.Namespace, rounds: int) -> dict[str, dict]:
    """Start every server (start-up time measured one at a time), then load them in turn, ``rounds`` times
    round-robin, so that a slow spell of the machine hits each of them alike. Requests/s and latencies are
    the median over the rounds; resident memory the largest seen."""
    procs: dict[str, tuple[subprocess.Popen, int, float]] = {}
    runs: dict[str, list[dict]] = {name: [] for name in servers}
    rss: dict[str, float] = {}
    try:
        for name, (cmd, port, *more) in servers.items():  # more: (env,) or (env, cwd)
            proc, startup = start(cmd, port, env=more[0] if more else None, cwd=more[1] if len(more) > 1 else None)
            procs[name] = (proc, port, startup)
            for _ in range(200):  # warm up
                post_once(port)
            rss[name] = tree_rss_mb(proc.pid)
        for r in range(rounds):
            for name, (proc, port, _) in procs.items():
                cpu = process_cpu_s(proc.pid)
                result = load(port, args)
                used = process_cpu_s(proc.pid)
                served = result["rps"] * args.duration
                result["cpu_us"] = (used - cpu) / served * 1e6 if cpu is not None and used is not None and served else None
                runs[name].append(result)
                rss[name] = max(rss[name], tree_rss_mb(proc.pid))
                print(f"  round {r + 1}/{rounds} {name:9} {result['rps']:10.0f} req/s  p99 {result['p99_ms']:8.2f} ms", flush=True)
        shadows = {name: shadow_counts(port) for name, (_, port, _) in procs.items()}
    finally:
        for proc, _, _ in procs.values():
            stop(proc)
    out = {}
    for name, results in runs.items():
        out[name] = {
            "rps": statistics.median(x["rps"] for x in results),
            "p50_ms": statistics.median(x["p50_ms"] for x in results),
            "p99_ms": statistics.median(x["p99_ms"] for x in results),
            "non_2xx": sum(x["non_2xx"] for x in results),
            "socket_errors": "; ".join(x["socket_errors"] for x in results if x["socket_errors"]),
            "generator": results[0]["generator"],
            "rounds": [{"rps": x["rps"], "p99_ms": x["p99_ms"], "cpu_us": x["cpu_us"]} for x in results],
            "cpu_us_per_request": (statistics.median(x["cpu_us"] for x in results)
                                   if all(x["cpu_us"] is not None for x in results) else None),
            "rss_mb": rss[name], "start_to_first_200_s": procs[name][2],
            **({"shadow": shadows[name]} if shadows.get(name) else {}),
        }
    return out


def start_medians(servers: dict[str, tuple], repeats: int) -> dict[str, list[float]]:
    """Each server started ``repeats`` more times, in turn (so a slow spell hits each alike): the seconds from
    process start to its first 200, every run (the figure is their median with the first start's)."""
    runs: dict[str, list[float]] = {name: [] for name in servers}
    for _ in range(repeats):
        for name, (cmd, port, *more) in servers.items():
            proc, seconds = start(cmd, port, env=more[0] if more else None, cwd=more[1] if len(more) > 1 else None)
            stop(proc)
            runs[name].append(seconds)
    return runs


def compile_bytecode(tree: Path) -> None:
    """Compile ``tree``'s ``edge`` package into its ``__pycache__`` folders, as ``pip install`` does for an
    installed deploykit: a checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module
    from source at each start (measured: about a third of the edge's start-up CPU).

    Raises:
        subprocess.CalledProcessError: a module does not compile.
    """
    subprocess.run([sys.executable, "-m", "compileall", "-q", "edge"], cwd=tree, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)


def api_timings(bundle: Path, model: Path, repeats: int) -> dict:
    """Median seconds of one prediction: edge Predictor vs Keras predict_on_batch on a DataFrame."""
    code = textwrap.dedent(f'''
        import json, statistics, sys, time
        sys.path.insert(0, {str(REPO)!r})
        from edge.runner import Predictor
        p = Predictor({str(bundle)!r})
        row = [[6.0, 250.0, 66.5]]
        for _ in range(1000): p.predict_rows(row)
        times = []
        for _ in range({repeats * 50}):
            t = time.perf_counter(); p.predict_rows(row); times.append(time.perf_counter() - t)
        edge_rows = statistics.median(times)
        one = row[0]
        for _ in range(1000): p.predict_row(one)
        times = []
        for _ in range({repeats * 50}):
            t = time.perf_counter(); p.predict_row(one); times.append(time.perf_counter() - t)
        edge_row = statistics.median(times)
        for _ in range(1000): p.predict_value(one)
        times = []
        for _ in range({repeats * 50}):
            t = time.perf_counter(); p.predict_value(one); times.append(time.perf_counter() - t)
        edge = statistics.median(times)
        import pandas as pd, keras
        model = keras.models.load_model({str(model)!r})
        df = pd.DataFrame(row, columns=["rm", "tax", "age"])
        for _ in range(20): model.predict_on_batch(df)
        times = []
        for _ in range({repeats}):
            t = time.perf_counter(); model.predict_on_batch(pd.DataFrame(row, columns=["rm", "tax", "age"])); times.append(time.perf_counter() - t)
        print(json.dumps({{"edge_s": edge, "edge_row_s": edge_row, "edge_rows_s": edge_rows, "keras_s": statistics.median(times)}}))
    ''')
    out = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def make_repository(root: Path, bundle: Path, versions: int, model: dict) -> Path:
    """``root/boston/1..versions`` (copies of one bundle) and ``root/rollout.json`` for ``model``."""
    for n in range(1, versions + 1):
        shutil.copytree(bundle, root / "boston" / str(n))
    (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {"boston": model}}))
    return root


def rss_per_version(work: Path, bundle: Path) -> dict:
    """Idle resident memory (after 200 requests) of a repository of 1 and of 4 versions of the bundle."""
    out = {}
    for n in (1, 4):
        root = make_repository(work / f"rss{n}", bundle, n, {"labels": {"stable": 1}})
        port = free_port()
        proc, _ = start([sys.executable, "-m", "edge", "serve", str(root), "--port", str(port)], port)
        try:
            for _ in range(200):
                post_once(port)
            out[n] = tree_rss_mb(proc.pid)
        finally:
            stop(proc)
    return {"rss_1_version_mb": out[1], "rss_4_versions_mb": out[4], "rss_per_version_mb": (out[4] - out[1]) / 3}


def make_bundle(work: Path) -> tuple[Path, Path]:
    model, bundle = work / "mlp.keras", work / "bundle"
    for cmd in ([sys.executable, "-m", "convert", "train", "--model", "mlp", "--out", str(model)],
                [sys.executable, "-m", "convert", "convert", str(model), "--data", "convert/data/boston.csv",
                 "--target", "medv", "--out", str(bundle), "--force"]):
        subprocess.run(cmd, cwd=REPO, env=ENV, check=True, capture_output=True)
    return bundle, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path)
    parser.add_argument("--model", type=Path, help="the .keras model the bundle was converted from (baseline)")
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per server and round")
    parser.add_argument("--start-repeats", type=int, default=4,
                        help="baseline and edge are started this many more times, in turn: start-up is the median")
    parser.add_argument("--from-source", action="store_true",
                        help="do not compile the trees' bytecode first (each start compiles edge from source when "
                             "PYTHONDONTWRITEBYTECODE is set and no __pycache__ is there)")
    parser.add_argument("--rounds", type=int, default=5,
                        help="ceiling and edge are loaded in turn this many times (medians reported)")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--python-client", action="store_true", help="use the asyncio client even if wrk exists")
    parser.add_argument("--workers", type=int, default=1, help="deploykit-edge --workers")
    parser.add_argument("--api-repeats", type=int, default=200)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "edge_bench.json")
    parser.add_argument("--before-tree", type=Path, metavar="PATH",
                        help="a checkout of the server before the rollout: its single-bundle server is loaded too")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="edge_bench_"))
    if args.bundle is None:
        print("training and converting the Boston MLP ...", flush=True)
        args.bundle, args.model = make_bundle(work)
    elif args.model is None:
        parser.error("--model is needed with --bundle (the baseline serves the Keras model)")
    (work / "baseline.py").write_text(BASELINE_APP)
    (work / "ceiling.py").write_text(CEILING_APP)

    print(f"load: {args.connections} connections, {args.duration} s each, loopback, "
          f"{'wrk' if shutil.which('wrk') and not args.python_client else 'python asyncio client'}", flush=True)
    port = free_port()
    results = measure_servers({"baseline": ([sys.executable, str(work / "baseline.py"), str(args.model), str(port)], port)},
                              args, 1)
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    ceiling_port, edge_port, canary_port, shadow_port, before_port = sorted(ports)
    canary_repo = make_repository(work / "canary", args.bundle, 2, {"labels": {"stable": 1, "canary": 2},
                                                                    "canary": {"share": 0.1}})
    shadow_repo = make_repository(work / "shadow", args.bundle, 2, {"labels": {"stable": 1},
                                                                    "shadow": {"version": 2, "share": 1.0}})
    servers: dict[str, tuple] = {
        "ceiling": ([sys.executable, str(work / "ceiling.py"), str(ceiling_port), str(args.workers), str(REPO)], ceiling_port),
        "edge": ([sys.executable, "-m", "edge", "serve", str(args.bundle), "--port", str(edge_port),
                  "--workers", str(args.workers)], edge_port),
        "edge_canary": ([sys.executable, "-m", "edge", "serve", str(canary_repo), "--port", str(canary_port)], canary_port),
        "edge_shadow": ([sys.executable, "-m", "edge", "serve", str(shadow_repo), "--port", str(shadow_port)], shadow_port),
    }
    if args.before_tree is not None:
        servers["edge_before"] = ([sys.executable, "-m", "edge", "serve", str(args.bundle), "--port", str(before_port),
                                   "--workers", str(args.workers)], before_port,
                                  {**ENV, "PYTHONPATH": str(args.before_tree.resolve())}, args.before_tree.resolve())
    if not args.from_source:  # as installed: pip compiles the bytecode
        compile_bytecode(REPO)
        if args.before_tree is not None:
            compile_bytecode(args.before_tree.resolve())
    results.update(measure_servers(servers, args, args.rounds))
    starts = start_medians({"baseline": ([sys.executable, str(work / "baseline.py"), str(args.model), str(port)], port),
                            "edge": servers["edge"]}, args.start_repeats)
    for name, runs in starts.items():
        results[name]["start_runs_s"] = [results[name]["start_to_first_200_s"], *runs]
        results[name]["start_to_first_200_s"] = statistics.median(results[name]["start_runs_s"])
    api = api_timings(args.bundle, args.model, args.api_repeats)
    memory = rss_per_version(work, args.bundle)

    b, c, e = results["baseline"], results["ceiling"], results["edge"]
    ratios = {
        "rps_vs_baseline": e["rps"] / b["rps"],
        "rps_vs_ceiling": e["rps"] / c["rps"],
        "p99_vs_baseline": e["p99_ms"] / b["p99_ms"],
        "rss_vs_baseline": e["rss_mb"] / b["rss_mb"],
        "start_vs_baseline": e["start_to_first_200_s"] / b["start_to_first_200_s"],
        "api_speedup": api["keras_s"] / api["edge_s"],
        "canary_rps_vs_single": results["edge_canary"]["rps"] / e["rps"],
        "shadow_p99_vs_single": results["edge_shadow"]["p99_ms"] / e["p99_ms"],
    }
    lower_is_better = {"p99_vs_baseline", "rss_vs_baseline", "start_vs_baseline", "shadow_p99_vs_single"}
    met = {k: (v <= GOALS[k]) if k in lower_is_better else (v >= GOALS[k]) for k, v in ratios.items()}

    print()
    print(f"{'figure':32} {'baseline':>12} {'ceiling':>12} {'edge':>12}")
    print(f"{'requests/s':32} {b['rps']:12.0f} {c['rps']:12.0f} {e['rps']:12.0f}")
    print(f"{'p99 latency (ms)':32} {b['p99_ms']:12.2f} {c['p99_ms']:12.2f} {e['p99_ms']:12.2f}")
    print(f"{'resident memory, all procs (MB)':32} {b['rss_mb']:12.1f} {c['rss_mb']:12.1f} {e['rss_mb']:12.1f}")
    print(f"{'start to first 200, median (s)':32} {b['start_to_first_200_s']:12.2f} {c['start_to_first_200_s']:12.2f} {e['start_to_first_200_s']:12.2f}")
    print(f"{'one prediction, Python API (us)':32} {api['keras_s'] * 1e6:12.1f} {'':>12} {api['edge_s'] * 1e6:12.1f}"
          f"   (predict_value; predict_row {api['edge_row_s'] * 1e6:.1f}, predict_rows {api['edge_rows_s'] * 1e6:.1f})")
    print()
    rollout = [n for n in ("edge_before", "edge", "edge_canary", "edge_shadow") if n in results]
    print(f"{'rollout (one-row fast path)':32} " + " ".join(f"{n:>12}" for n in rollout))
    print(f"{'requests/s':32} " + " ".join(f"{results[n]['rps']:12.0f}" for n in rollout))
    print(f"{'p99 latency (ms)':32} " + " ".join(f"{results[n]['p99_ms']:12.2f}" for n in rollout))
    print(f"{'resident memory (MB)':32} " + " ".join(f"{results[n]['rss_mb']:12.1f}" for n in rollout))
    if all(results[n].get("cpu_us_per_request") for n in rollout):
        print(f"{'server CPU per request (us)':32} " + " ".join(f"{results[n]['cpu_us_per_request']:12.1f}" for n in rollout)
              + "   (the server process's threads; the shadow's worker process not in it)")
    sh = results["edge_shadow"].get("shadow", {})
    if sh:
        print(f"{'shadow compared/skipped/dropped':32} {sh.get('compared', 0):12.0f} {sh.get('skipped', 0):12.0f} "
              f"{sh.get('dropped', 0):12.0f}   (over every round; requests are not copied while the worker is behind)")
    paired = [s["p99_ms"] / x["p99_ms"] for x, s in zip(e["rounds"], results["edge_shadow"]["rounds"])]
    med, lo, hi = median_ci(paired)
    results["edge_shadow"]["p99_vs_single_by_round"] = paired
    print(f"{'p99 shadow/single by round':32} " + " ".join(f"{x:.3f}" for x in paired)
          + f"   (median {med:.3f}, 95% CI {lo:.3f}-{hi:.3f}; the figure below is the medians' ratio)")
    print(f"{'RSS per loaded version (MB)':32} {memory['rss_per_version_mb']:12.1f}   "
          f"(1 version {memory['rss_1_version_mb']:.1f}, 4 versions {memory['rss_4_versions_mb']:.1f})")
    if "edge_before" in results:
        ratios["single_rps_vs_before"] = e["rps"] / results["edge_before"]["rps"]
        ratios["canary_rps_vs_before"] = results["edge_canary"]["rps"] / results["edge_before"]["rps"]
        GOALS["single_rps_vs_before"] = GOALS["canary_rps_vs_before"] = 0.90
        met.update({k: ratios[k] >= 0.90 for k in ("single_rps_vs_before", "canary_rps_vs_before")})
    print()
    names = {"rps_vs_baseline": "requests/s edge/baseline", "rps_vs_ceiling": "requests/s edge/ceiling",
             "p99_vs_baseline": "p99 edge/baseline", "rss_vs_baseline": "RSS edge/baseline",
             "start_vs_baseline": "start edge/baseline", "api_speedup": "API predict_on_batch/edge",
             "canary_rps_vs_single": "requests/s canary/single", "shadow_p99_vs_single": "p99 shadow/single",
             "single_rps_vs_before": "requests/s single/before", "canary_rps_vs_before": "requests/s canary/before"}
    for key, value in ratios.items():
        goal = ("<= " if key in lower_is_better else ">= ") + f"{GOALS[key]:.3g}"
        print(f"{names[key]:32} {value:10.3g}   goal {goal:10} {'met' if met[key] else 'NOT MET'}")
    report = {"servers": results, "api": api, "rollout_memory": memory, "ratios": ratios, "goals": GOALS, "met": met,
              "command": " ".join([Path(sys.executable).name, "bench/edge_bench.py", *(argv or sys.argv[1:])]),
              "bytecode": "from source" if args.from_source else "compiled first (python -m compileall edge)",
              "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    print(f"\nwritten {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if all(met.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
