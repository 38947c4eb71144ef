"""In-process micro-benchmark of the rollout's per-request cost (issue 14): ``EdgeApp.__call__`` on the
course's one-row ``POST /predict_json`` through a fake ASGI receive/send, no HTTP server and no sockets.

Three apps over the same bundle: ``single`` (the bundle folder), ``canary`` (``MODELS/boston/{1,2}``, a
10 % keyless canary) and ``shadow`` (version 2 shadowing every request: its copies batched to the shadow's
worker process, whose answers this thread reads). Reported per request: the CPU time of the calling thread
(``time.thread_time``; the worker process's own CPU is not in it, what reading its answers costs this
thread is), the minimum over ``--rounds`` rounds of ``--requests`` requests, the apps taking turns. The
loop is given a turn every ``--yield-every`` requests (``asyncio.sleep(0)``, all three apps alike), as a
server's loop runs its callbacks between requests: the shadow's batches are sent and its answers read
then. The shadow's copies compared and dropped are printed. What the HTTP server adds (uvicorn, the two sends) is the same for all three; the side by
side server figures are ``bench/edge_bench.py``'s.

    python bench/rollout_micro.py --bundle B [--requests 20000] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from edge.server import ServeConfig, build_app  # noqa: E402

SCOPE = {"type": "http", "method": "POST", "path": "/predict_json", "client": ("127.0.0.1", 5000),
         "headers": [(b"host", b"x"), (b"content-type", b"application/json"), (b"content-length", b"14")]}
MESSAGE = {"type": "http.request", "body": b"[6, 250, 66.5]", "more_body": False}


def repository(work: Path, name: str, bundle: Path, model: dict) -> Path:
    root = work / name
    for n in (1, 2):
        shutil.copytree(bundle, root / "boston" / str(n))
    (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {"boston": model}}))
    return root


async def drive(app, n: int, every: int = 16) -> float:
    """Seconds of this thread's CPU per request over ``n`` requests (the loop gets a turn every ``every``)."""
    async def receive() -> dict:
        return MESSAGE

    async def send(message: dict) -> None:
        return None

    t = time.thread_time()
    for i in range(n):
        await app(dict(SCOPE), receive, send)
        if i % every == 0:
            await asyncio.sleep(0)
    return (time.thread_time() - t) / n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--yield-every", type=int, default=16, help="requests between the loop's turns")
    parser.add_argument("--profile", action="store_true",
                        help="then run the single app's requests once more under cProfile; print the top functions")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rollout_micro_"))
    try:
        apps = {"single": build_app(ServeConfig(bundle=str(args.bundle))),
                "canary": build_app(ServeConfig(bundle=str(repository(
                    work, "canary", args.bundle, {"labels": {"stable": 1, "canary": 2}, "canary": {"share": 0.1}})))),
                "shadow": build_app(ServeConfig(bundle=str(repository(
                    work, "shadow", args.bundle, {"labels": {"stable": 1}, "shadow": {"version": 2, "share": 1.0}}))))}
        for app in apps.values():
            app.startup()
        times: dict[str, list[float]] = {name: [] for name in apps}

        async def rounds() -> None:
            for _ in range(args.rounds):
                for name, app in apps.items():
                    times[name].append(await drive(app, args.requests, args.yield_every))

        asyncio.run(rounds())
        if args.profile:
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            asyncio.run(drive(apps["single"], args.requests, args.yield_every))
            profile.disable()
            pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        for app in apps.values():
            app.shutdown()
        stats = apps["shadow"].dispatcher.shadow_stats
        print(f"shadow copies compared {stats.compared}, dropped {stats.dropped}, failed {stats.errors}")
        single = min(times["single"])
        for name, values in times.items():
            best = min(values)
            print(f"{name:8} {best * 1e6:7.2f} us/request (min of {args.rounds}; +{(best - single) * 1e6:.2f} us "
                  f"over single)   rounds: {' '.join(f'{v * 1e6:.2f}' for v in values)}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
