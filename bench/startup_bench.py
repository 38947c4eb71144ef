"""Side-by-side start-up of `deploykit-edge serve BUNDLE`: process spawn to the first 200 on /predict_json.

Each tree (this checkout, and every ``--tree PATH``, e.g. a worktree of main) is started in turn,
``--repeats`` times round-robin (so a slow spell of a shared machine hits each alike), with
``PYTHONPATH`` set to the tree; the median, the minimum and every run are reported, and the ratio of each
tree's median to this tree's; so is the server's CPU time (user + system) until its first 200, which a
loaded machine disturbs less than the wall clock. Also, once per tree, what ``python -X importtime`` says the serve path
imports (the top-level packages' cumulative microseconds, largest first).

    python bench/startup_bench.py --bundle B [--tree /work/main] [--repeats 15] [--compile] [--json out.json]

Each tree is started from its own folder (``python -m edge`` imports the working directory's ``edge``).
Without --compile, a tree without ``__pycache__`` run with PYTHONDONTWRITEBYTECODE=1 compiles every module
it imports at each start.

Raises nothing of its own; a server that does not answer within 120 s stops the run (RuntimeError).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from edge_bench import ENV, compile_bytecode, free_port, start, stop  # noqa: E402


def serve_cmd(bundle: Path, port: int) -> list[str]:
    """The command the edge bench starts: ``python -m edge serve BUNDLE --port PORT``."""
    return [sys.executable, "-m", "edge", "serve", str(bundle), "--port", str(port)]


def cpu_seconds(pid: int) -> float:
    """The user + system CPU seconds a process has used so far (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def once(tree: Path, bundle: Path) -> tuple[float, float]:
    """Seconds from spawn to the first 200 of one server run from ``tree``, and the CPU seconds the server
    used until then (less sensitive to a loaded machine than the wall clock); the server is stopped after."""
    port = free_port()
    proc, seconds = start(serve_cmd(bundle, port), port, env={**ENV, "PYTHONPATH": str(tree)}, cwd=tree)
    cpu = cpu_seconds(proc.pid)
    stop(proc)
    return seconds, cpu


def imports(tree: Path, bundle: Path) -> list[tuple[str, int]]:
    """The serve path's top-level imports (cumulative microseconds, largest first), from ``-X importtime``
    of a server run until its first 200."""
    port = free_port()
    cmd = [sys.executable, "-X", "importtime", *serve_cmd(bundle, port)[1:]]
    proc, _ = start(cmd, port, env={**ENV, "PYTHONPATH": str(tree)}, cwd=tree)
    proc.terminate()
    err = proc.communicate(timeout=30)[1].decode()
    out = []
    for line in err.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S.*)$", line)
        if m:
            out.append((m.group(2), int(m.group(1))))
    return sorted(out, key=lambda x: -x[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--tree", type=Path, action="append", default=[],
                        help="another checkout to start side by side (repeatable)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--compile", action="store_true",
                        help="compile each tree's edge bytecode first (as pip install does; edge_bench's default)")
    args = parser.parse_args(argv)
    trees = {"this": REPO, **{str(t): t.resolve() for t in args.tree}}
    if args.compile:
        for tree in trees.values():
            compile_bytecode(tree)
    runs: dict[str, list[float]] = {name: [] for name in trees}
    cpus: dict[str, list[float]] = {name: [] for name in trees}
    once(REPO, args.bundle)  # warm the page cache
    for r in range(args.repeats):
        for name, tree in trees.items():
            wall, cpu = once(tree, args.bundle)
            runs[name].append(wall)
            cpus[name].append(cpu)
        print(f"  round {r + 1}/{args.repeats} "
              + "  ".join(f"{n} {runs[n][-1]:.3f} s (cpu {cpus[n][-1]:.2f})" for n in trees), flush=True)
    med = {name: statistics.median(v) for name, v in runs.items()}
    cpu_med = {name: statistics.median(v) for name, v in cpus.items()}
    print(f"\n{'tree':24} {'median s':>9} {'min s':>9} {'vs this':>8} {'cpu s':>7} {'vs this':>8}")
    for name, values in runs.items():
        print(f"{name:24} {med[name]:9.3f} {min(values):9.3f} {med[name] / med['this']:8.2f} "
              f"{cpu_med[name]:7.2f} {cpu_med[name] / cpu_med['this']:8.2f}")
    top = {}
    for name, tree in trees.items():
        top[name] = imports(tree, args.bundle)[:12]
        print(f"\n{name}: top-level imports (cumulative ms)")
        print("  " + ", ".join(f"{mod} {us / 1000:.0f}" for mod, us in top[name]))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "median_s": med, "cpu_s": cpus, "cpu_median_s": cpu_med, "imports": top,
                                         "command": " ".join(["bench/startup_bench.py", *(argv or sys.argv[1:])]),
                                         "machine": {"cpus": os.cpu_count(), "load": os.getloadavg()}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
