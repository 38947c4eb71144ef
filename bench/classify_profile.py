"""Where the ``:classify`` handler's time goes, in-process (issue 11): a 96x96 JPEG upload through the app's
ASGI entry (no socket), the prediction inline on the event loop (a lone upload's path), alternating with a
bare ``invoke()`` of a second interpreter of the same artifact. Reported: the medians of wall time and of
this thread's CPU time (``time.thread_time``: what a loaded machine's other processes change least) of
each, and handler minus invoke. ``--tree PATH`` imports ``edge`` from another checkout (run it once per
tree, in turn, to compare); ``--profile`` prints cProfile's top functions.

    python bench/classify_profile.py --bundle DIR [--requests 2000] [--threads 1] [--tree PATH] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the checkout whose edge is imported")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="tottime", help="cProfile order (tottime, cumulative)")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)
    sys.path[:0] = [str(args.tree.resolve()), str(ROOT / "bench"), str(ROOT / "tests" / "edge")]

    from edge_helpers import acall
    from image_bench import jpeg

    from edge.runner import Predictor
    from edge.server import ServeConfig, build_app

    body = jpeg(96, 96)
    app = build_app(ServeConfig(bundle=str(args.bundle), variant="float32", threads=args.threads))
    app.startup()
    if app._executor is not None:
        app._executor.inline_under = float("inf")  # a lone upload: inline
    path = f"/v1/models/{app.name}:classify"
    interp = Predictor(args.bundle, "float32", num_threads=args.threads)._session().interpreter
    wall: dict[str, list[float]] = {"handler": [], "invoke": []}
    cpu: dict[str, list[float]] = {"handler": [], "invoke": []}

    async def rounds(n: int, keep: bool) -> None:
        for _ in range(n):
            t, c = time.perf_counter(), time.thread_time()
            status, answer = await acall(app, "POST", path, body, content_type=b"image/jpeg")
            w1, c1 = time.perf_counter() - t, time.thread_time() - c
            if status != 200:
                raise RuntimeError(answer[:200])
            t, c = time.perf_counter(), time.thread_time()
            interp.invoke()
            w2, c2 = time.perf_counter() - t, time.thread_time() - c
            if keep:
                wall["handler"].append(w1)
                cpu["handler"].append(c1)
                wall["invoke"].append(w2)
                cpu["invoke"].append(c2)

    asyncio.run(rounds(50, False))
    profile = None
    if args.profile:
        import cProfile

        profile = cProfile.Profile()
        profile.enable()
    asyncio.run(rounds(args.requests, True))
    if profile is not None:
        profile.disable()
    app.shutdown()
    for name, d in (("wall", wall), ("cpu", cpu)):
        h, i = statistics.median(d["handler"]) * 1e3, statistics.median(d["invoke"]) * 1e3
        print(f"{args.tree}: {name:4} handler {h:.3f} ms, invoke {i:.3f} ms, handler - invoke {h - i:.3f} ms "
              f"({(h - i) / i:.2f}x invoke)")
    if profile is not None:
        import pstats

        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
