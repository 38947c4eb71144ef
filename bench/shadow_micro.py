"""What the shadow costs the event loop, per request, without HTTP (issue 14): the same one-row
``Dispatcher.predict_value`` calls (the Boston bundle as versions 1 and 2) with version 2 shadowing every
request through the server's ``ShadowWorker`` and its worker process, against the same dispatcher with no
shadow, in turn, ``--rounds`` times, for this tree and each ``--tree NAME=PATH`` (each in its own
interpreter importing that tree), 128 requests at a time, then a pause as long as 128 requests take at
``--rate`` a second (the worker catches up; the pause is not counted). The worker's answers are read after
every 128 requests, as the server's loop does. First, the parts alone, ``--rounds`` runs of 300 batches each, trees in turn: the time a copy takes to
be appended, a batch of 128 to be sent, its answer to be read (the worker given 3 ms between batches).
Then, per tree, the loop thread's CPU time per request (``time.thread_time``: the prediction, the copy, the
sends, reading the answers), shadow and not, the rounds' differences and the copies compared.

    python bench/shadow_micro.py --bundle B [--tree NAME=PATH ...] [--requests 20000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r'''
import json, sys, time
from pathlib import Path
from edge.repository import Repository
from edge.dispatch import Dispatcher
from edge.server.shadow_worker import ShadowWorker

work, requests, rounds, rate = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
dispatchers = {}
for kind in ("single", "shadow"):
    repo = Repository(work / kind)
    repo.scan()
    dispatchers[kind] = Dispatcher(repo, "boston", log=lambda _: None)
worker = ShadowWorker(None)
worker.max_queue = 10 ** 9  # never behind: every copy made and sent (what the loop pays at a load the worker keeps up with)
dispatchers["shadow"].shadow_sink = worker.feed()
row = [6.0, 250.0, 66.5]
cpu, sleep = time.thread_time, time.sleep
pause = 128 / rate  # the loop's other work for 128 requests at the bench's load, slept: the worker catches up
out = {"single": [], "shadow": []}
for kind in ("single", "shadow"):  # warm up (and start the worker process)
    for _ in range(2000):
        dispatchers[kind].predict_value(row)
worker.wait(30)
for _ in range(rounds):
    for kind in ("single", "shadow"):
        d = dispatchers[kind]
        spent = 0.0
        for i in range(requests // 128):
            t = cpu()
            for _ in range(128):
                d.predict_value(row)
            if worker.sock is not None:
                worker._readable()  # the answers that came, as the server's loop reads them
            spent += cpu() - t
            sleep(pause)
        out[kind].append(spent / (requests // 128 * 128) * 1e6)
worker.wait(30)
stats = dispatchers["shadow"].shadow_stats
out["counts"] = {"compared": stats.compared, "dropped": stats.dropped}
worker.stop()
print(json.dumps(out))
'''

PARTS = r'''
import json, statistics, sys, time
from pathlib import Path
from edge.repository import Repository
from edge.dispatch import Dispatcher
from edge.server.shadow_worker import ShadowWorker

work, batches = Path(sys.argv[1]), int(sys.argv[2])
repo = Repository(work / "shadow")
repo.scan()
d = Dispatcher(repo, "boston", log=lambda _: None)
worker = ShadowWorker(None)
worker.max_queue = 10 ** 9  # never behind: every batch made and sent
d.shadow_sink = feed = worker.feed()
d.predict_value([6.0, 250.0, 66.5])
worker.wait(30)
target = feed.target
row, value, clock = [6.0, 250.0, 66.5], 22.5, time.perf_counter
add = feed.value
appends, sends, reads = [], [], []
for b in range(batches):
    worker.batch = 10 ** 9  # no send while the batch is made
    t = clock()
    for i in range(128):
        add(target, 1, row, value, "p")
    appends.append(clock() - t)
    t = clock()
    worker.flush_feed(feed)
    sends.append(clock() - t)
    time.sleep(0.003)  # the worker answers (or rests), as between batches at the bench's load
    t = clock()
    worker._readable()
    reads.append(clock() - t)
worker.wait(30)
stats = d.shadow_stats
q = lambda xs, k: statistics.quantiles(xs, n=10)[k] * 1e6
print(json.dumps({"append_ns": statistics.median(appends) / 128 * 1e9, "send_us": statistics.median(sends) * 1e6,
                  "send_p90_us": q(sends, 8), "read_us": statistics.median(reads) * 1e6, "read_p90_us": q(reads, 8),
                  "compared": stats.compared, "dropped": stats.dropped}))
worker.stop()
'''


def _measure(args: argparse.Namespace, trees: dict[str, Path], work: Path) -> None:
    """The parts alone, tree by tree in turns, then the loop's CPU per request; printed."""
    for kind, model in (("single", {"labels": {"stable": 1}}),
                        ("shadow", {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}})):
        for n in (1, 2):
            shutil.copytree(args.bundle, work / kind / "boston" / str(n))
        (work / kind / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"boston": model}}))
    parts = {}
    for _ in range(args.rounds):  # the parts alone: a batch made, sent, its answer read; trees in turn
        for name, tree in trees.items():
            got = subprocess.run([sys.executable, "-c", PARTS, str(work), "300"], cwd=tree,
                                 env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True,
                                 check=True).stdout
            parts.setdefault(name, []).append(json.loads(got.strip().splitlines()[-1]))
    for name, runs in parts.items():
        m = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name}: per copy appended {m['append_ns']:.0f} ns; a batch of 128 sent in {m['send_us']:.1f} us "
              f"(p90 {m['send_p90_us']:.1f}), its answer read in {m['read_us']:.1f} us (p90 {m['read_p90_us']:.1f}); "
              f"medians of {len(runs)} runs; of {300 * 128 + 1} copies compared {m['compared']:.0f}, dropped "
              f"{m['dropped']:.0f} (the socket full)")
    for name, tree in trees.items():
        got = subprocess.run([sys.executable, "-c", CHILD, str(work), str(args.requests), str(args.rounds), str(args.rate)],
                             cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True,
                             text=True, check=True).stdout
        r = json.loads(got.strip().splitlines()[-1])
        extra = [b - a for a, b in zip(r["single"], r["shadow"])]
        med = statistics.median
        print(f"{name}: the loop's CPU per request (thread time: predict_value, the copy, the sends, reading the "
              f"answers) single {med(r['single']):.2f} us, shadow {med(r['shadow']):.2f} us: +{med(extra):.2f} us "
              f"(rounds {' '.join(f'{x:+.2f}' for x in extra)}); {r['counts']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--tree", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20000,
                        help="the load the pauses stand for (requests a second)")
    args = parser.parse_args(argv)
    trees = {name: Path(path).resolve() for name, _, path in (t.partition("=") for t in args.tree)}
    trees["this"] = REPO
    with tempfile.TemporaryDirectory(prefix="shadow_micro_") as folder:
        _measure(args, trees, Path(folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
