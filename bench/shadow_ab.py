"""The shadow's cost to the caller's tail, measured so that the ratio can be trusted (issue 14): per tree a
single-bundle server, the same repository served without a shadow (``repo``: ``MODELS/boston/{1,2}``, the
stable label on 1) and with version 2 shadowing every request (``shadow``; so shadow/repo is the shadow's own
cost, shadow/single the issue's figure) (this one, and each ``--tree NAME=PATH`` / ``--before-tree PATH``), loaded in turn by wrk at the
edge bench's load (1 thread, 8 connections, ``--duration`` s), ``--rounds`` rounds, the order rotated every
round (so no server always follows another's shadow worker). Per server and round: requests/s, p50, p99,
the server process's own CPU per answered request and its shadow worker's (``/proc``).

Printed per tree: the rounds' shadow/single and shadow/repo ratios (each shadow run against the same
round's run of its tree), their median with a distribution-free 95 % confidence interval (order statistics of the
binomial), the quartiles, and the shadow's copies compared, skipped (not copied while its worker was behind) and dropped (``/metrics``). Linux
(``/proc``) and wrk only.

    python bench/shadow_ab.py --bundle B [--before-tree PATH] [--tree NAME=PATH ...] [--rounds 8] [--duration 3]
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

from edge_bench import median_ci  # (bench/ is this script's folder: on sys.path)

REPO = Path(__file__).resolve().parents[1]
LUA = 'wrk.method="POST"\nwrk.body="[6, 250, 66.5]"\nwrk.headers["Content-Type"]="application/json"\n'


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads), from /proc; 0 for a process gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu(pid: int) -> float:
    """CPU seconds of a process's live children (the shadow's worker process), from /proc."""
    total = 0.0
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0
    for kid in kids:
        total += cpu_seconds(int(kid))
    return total


def wrk(port: int, duration: int, script: Path) -> tuple[float, float, float, int]:
    """(requests/s, p50 ms, p99 ms, requests) of one wrk run."""
    out = subprocess.run(["wrk", "-t1", "-c8", f"-d{duration}s", "--latency", "-s", str(script),
                          f"http://127.0.0.1:{port}/predict_json"], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]

    def ms(q: str) -> float:
        m = re.search(rf"^\s+{q}%\s+([0-9.]+)(us|ms|s)", out, re.M)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]  # type: ignore[union-attr]

    return rps, ms("50"), ms("99"), total


def quartiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def shadow_counts(port: int) -> dict[str, str]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
    return dict(re.findall(r"^deploykit_shadow_(compared|skipped|dropped)_total\{[^}]*\} (\S+)$", text, re.M))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--before-tree", type=Path, metavar="PATH", help="the same as --tree before=PATH")
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH", help="another tree to compare")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=PATH",
                        help="a tree whose shadowed server alone runs, compared with this tree's single and repo")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args(argv)
    trees: dict[str, Path] = {}
    if args.before_tree is not None:
        trees["before"] = args.before_tree.resolve()
    for spec in args.tree:
        name, _, path = spec.partition("=")
        trees[name] = Path(path).resolve()
    trees["after"] = REPO
    variants = {name: Path(path).resolve() for name, _, path in (v.partition("=") for v in args.variant)}
    work = Path(tempfile.mkdtemp(prefix="shadow_ab_"))
    script = work / "post.lua"
    script.write_text(LUA)
    procs: dict[tuple[str, str], tuple[subprocess.Popen, int]] = {}
    try:
        for tree, path in {**trees, **variants}.items():
            root = work / tree
            for n in (1, 2):
                shutil.copytree(args.bundle, root / "boston" / str(n))
            (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {
                "boston": {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}}}}))
            plain = work / f"{tree}-plain"
            for n in (1, 2):
                shutil.copytree(args.bundle, plain / "boston" / str(n))
            (plain / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {
                "boston": {"labels": {"stable": 1}}}}))
            kinds = (("single", args.bundle), ("repo", plain), ("shadow", root))
            for kind, target in (kinds[2:] if tree in variants else kinds):
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
        keys = list(procs)
        runs: dict[tuple[str, str], list[dict[str, float]]] = {k: [] for k in procs}
        for r in range(args.rounds):
            order = keys[r % len(keys):] + keys[:r % len(keys)]
            for key in order:
                proc, port = procs[key]
                before, worker = cpu_seconds(proc.pid), children_cpu(proc.pid)
                rps, p50, p99, total = wrk(port, args.duration, script)
                runs[key].append({"rps": rps, "p50": p50, "p99": p99,
                                  "cpu_us": (cpu_seconds(proc.pid) - before) / total * 1e6,
                                  "worker_us": (children_cpu(proc.pid) - worker) / total * 1e6})
            print(f"round {r + 1}: " + "  ".join(
                f"{t}/{k} {v[-1]['rps']:.0f}/s p99 {v[-1]['p99']:.2f} ms" for (t, k), v in runs.items()), flush=True)
        report: dict[str, object] = {"rounds": {f"{t}/{k}": v for (t, k), v in runs.items()}}
        for tree in {**trees, **variants}:
            own = "after" if tree in variants else tree
            single, shadow = runs[(own, "single")], runs[(tree, "shadow")]
            for base in ("single", "repo"):
                line = []
                for what in ("p99", "p50", "rps"):
                    ratio = [b[what] / a[what] for a, b in zip(runs[(own, base)], shadow)]
                    med, lo, hi = median_ci(ratio)
                    q1, q3 = quartiles(ratio)
                    report[f"{tree}_{what}_shadow_vs_{base}"] = {"each": ratio, "median": med, "ci95": [lo, hi],
                                                                 "iqr": [q1, q3]}
                    line.append(f"{what} {med:.3f} [95% CI {lo:.3f}-{hi:.3f}; IQR {q1:.3f}-{q3:.3f}]")
                print(f"{tree}: shadow/{base} medians over {len(single)} rounds: " + "; ".join(line))
                print(f"{tree}: p99 shadow/{base} by round: "
                      + " ".join(f"{b['p99'] / a['p99']:.3f}" for a, b in zip(runs[(own, base)], shadow)))
            print(f"{tree}: medians of the rounds' p99 (ms): single {statistics.median(x['p99'] for x in single):.2f}, "
                  f"repo {statistics.median(x['p99'] for x in runs[(own, 'repo')]):.2f}, "
                  f"shadow {statistics.median(x['p99'] for x in shadow):.2f}")
            print(f"{tree}: server CPU per request single {statistics.median(x['cpu_us'] for x in single):.1f} us, "
                  f"shadow {statistics.median(x['cpu_us'] for x in shadow):.1f} us; shadow worker "
                  f"{statistics.median(x['worker_us'] for x in shadow):.1f} us per request")
            counts = shadow_counts(procs[(tree, "shadow")][1])
            report[f"{tree}_counts"] = counts
            print(f"{tree}: shadow copies compared {counts.get('compared')}, skipped {counts.get('skipped', '-')}, "
                  f"dropped {counts.get('dropped')}")
        if args.json is not None:
            args.json.write_text(json.dumps(report, indent=1))
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
