"""The shadow's cost side by side with the tree before a change (issue 14): four servers, single-bundle and
shadowed (``MODELS/boston/{1,2}``, version 2 shadowing every request), from this tree and from
``--before-tree``, loaded in turn by wrk (8 connections, ``--duration`` s, ``--rounds`` rounds). Per server
and round: requests/s, p99 and the server process's own CPU per answered request (``/proc/PID/stat``, all its
threads; a shadow worker process is not in it). Printed: per tree, the medians of the rounds' shadow/single
ratios, and the shadow's copies compared and dropped. Linux (``/proc``) and wrk only.

    python bench/shadow_ab.py --bundle B --before-tree PATH [--rounds 8] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LUA = 'wrk.method="POST"\nwrk.body="[6, 250, 66.5]"\nwrk.headers["Content-Type"]="application/json"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wrk(port: int, duration: int, script: Path) -> tuple[float, float, int]:
    """(requests/s, p99 ms, requests) of one wrk run."""
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{duration}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/predict_json"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"^\s+99%\s+([0-9.]+)(us|ms|s)", out, re.M)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}[p99.group(2)]  # type: ignore[union-attr]
    return rps, float(p99.group(1)) * scale, total  # type: ignore[union-attr]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--before-tree", type=Path, required=True, metavar="PATH")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=3)
    args = parser.parse_args(argv)
    trees = {"before": args.before_tree.resolve(), "after": REPO}
    work = Path(tempfile.mkdtemp(prefix="shadow_ab_"))
    script = work / "post.lua"
    script.write_text(LUA)
    procs: dict[tuple[str, str], tuple[subprocess.Popen, int]] = {}
    try:
        for tree, path in trees.items():
            root = work / tree
            for n in (1, 2):
                shutil.copytree(args.bundle, root / "boston" / str(n))
            (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {
                "boston": {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}}}}))
            for kind, target in (("single", args.bundle), ("shadow", root)):
                port = free_port()
                proc = subprocess.Popen([sys.executable, "-m", "edge", "serve", str(target), "--port", str(port)],
                                        cwd=path, env={**os.environ, "PYTHONPATH": str(path)},
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                procs[(tree, kind)] = (proc, port)
        for proc, port in procs.values():
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            wrk(port, 1, script)  # warm up
        runs: dict[tuple[str, str], list[tuple[float, float, float]]] = {k: [] for k in procs}
        for r in range(args.rounds):
            for key, (proc, port) in procs.items():
                before = cpu_seconds(proc.pid)
                rps, p99, total = wrk(port, args.duration, script)
                runs[key].append((rps, p99, (cpu_seconds(proc.pid) - before) / total * 1e6))
            print(f"round {r + 1}: " + "  ".join(f"{t}/{k} {v[-1][0]:.0f} req/s p99 {v[-1][1]:.2f} ms cpu {v[-1][2]:.1f} us"
                                                for (t, k), v in runs.items()), flush=True)
        for tree in trees:
            single, shadow = runs[(tree, "single")], runs[(tree, "shadow")]
            ratio = [[b[i] / a[i] for a, b in zip(single, shadow)] for i in range(3)]
            print(f"{tree}: shadow/single medians: requests/s {statistics.median(ratio[0]):.3f}, p99 "
                  f"{statistics.median(ratio[1]):.3f}, server CPU per request {statistics.median(ratio[2]):.3f} "
                  f"(single {statistics.median(x[2] for x in single):.1f} us, shadow "
                  f"{statistics.median(x[2] for x in shadow):.1f} us)")
            text = urllib.request.urlopen(f"http://127.0.0.1:{procs[(tree, 'shadow')][1]}/metrics").read().decode()
            counts = dict(re.findall(r"^deploykit_shadow_(compared|dropped)_total\{[^}]*\} (\S+)$", text, re.M))
            print(f"{tree}: shadow copies compared {counts.get('compared')}, dropped {counts.get('dropped')}")
    finally:
        for proc, _ in procs.values():
            proc.terminate()
        for proc, _ in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
