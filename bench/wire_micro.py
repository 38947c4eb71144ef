"""In-process micro-benchmark of the one-row request over the server's HTTP protocol (issue 12):
``EdgeProtocol`` (uvicorn's httptools protocol, as ``deploykit-edge serve`` runs it) fed the raw bytes of
``POST /predict_json [6, 250, 66.5]`` on one keep-alive connection through a stand-in transport (no
socket, no syscall), the app answering, one request after the other. Reported: this thread's CPU per
request (``time.thread_time``), the minimum over ``--rounds`` rounds, for the edge app and for the bare
ASGI app of ``bench/edge_bench.py``'s ceiling over the same protocol, in turns, and the edge / ceiling
ratio of requests per CPU second. What the kernel adds per write (a syscall each) is not in it: the
answer's writes per request are printed.

    python bench/wire_micro.py --bundle B [--requests 20000] [--rounds 5] [--tree PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

REQUEST = (b"POST /predict_json HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Type: application/json\r\n"
           b"Content-Length: 14\r\n\r\n[6, 250, 66.5]")
def ceiling_app():
    """The bench's bare ASGI app: ``bench/edge_bench.py``'s ceiling script itself, run as a module (its
    ``__main__`` part, uvicorn, left out)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from edge_bench import CEILING_APP

    namespace: dict = {"__name__": "ceiling"}
    exec(compile(CEILING_APP, "ceiling.py", "exec"), namespace)
    return namespace["app"]


class Transport(asyncio.Transport):
    """A socket's stand-in: counts the writes and the answers (each starts with the status line)."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.answers = 0
        self.last = b""

    def write(self, data: bytes) -> None:  # type: ignore[override]
        self.writes += 1
        if data.startswith(b"HTTP/1.1 "):
            self.answers += 1
        self.last = data

    def get_extra_info(self, name: str, default=None):  # type: ignore[override]
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def drive(protocol_class, app, n: int) -> tuple[float, float, bytes]:
    """CPU seconds per request over ``n`` requests, writes per answer, and the last write."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    config = Config(app=app, http=protocol_class, lifespan="off", access_log=False, server_header=False,
                    date_header=False, proxy_headers=False, log_level="warning")
    config.load()
    protocol = protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=asyncio.get_running_loop())
    transport = Transport()
    protocol.connection_made(transport)
    for _ in range(200):  # warm-up
        want = transport.answers + 1
        protocol.data_received(REQUEST)
        while transport.answers < want or protocol.cycle is None or not protocol.cycle.response_complete:
            await asyncio.sleep(0)
    writes = transport.writes
    t = time.thread_time()
    for _ in range(n):
        want = transport.answers + 1
        protocol.data_received(REQUEST)
        while transport.answers < want or not protocol.cycle.response_complete:
            await asyncio.sleep(0)
    cpu = (time.thread_time() - t) / n
    per = (transport.writes - writes) / n
    protocol.connection_lost(None)
    return cpu, per, transport.last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tree", type=Path, default=REPO, help="the checkout whose edge is imported")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.tree.resolve()))
    import uvloop  # noqa: F401 - the loop deploykit-edge serve runs on (uvicorn's "auto")

    from edge.http_protocol import EdgeProtocol
    from edge.server import ServeConfig, build_app

    app = build_app(ServeConfig(bundle=str(args.bundle)))
    app.startup()
    app.inline = True  # as after the lifespan's start-up
    ceiling = ceiling_app()

    async def rounds() -> dict[str, list[tuple[float, float, bytes]]]:
        out: dict[str, list] = {"edge": [], "ceiling": []}
        for _ in range(args.rounds):
            out["edge"].append(await drive(EdgeProtocol, app, args.requests))
            out["ceiling"].append(await drive(EdgeProtocol, ceiling, args.requests))
        return out

    out = uvloop.run(rounds())
    app.shutdown()
    best = {name: min(r[0] for r in runs) for name, runs in out.items()}
    for name, runs in out.items():
        print(f"{args.tree}: {name:8} {best[name] * 1e6:6.2f} us/request (min of {args.rounds}), "
              f"{runs[0][1]:.0f} write(s) per answer; rounds {' '.join(f'{r[0] * 1e6:.2f}' for r in runs)}")
    print(f"{args.tree}: edge / ceiling (requests per CPU second) {best['ceiling'] / best['edge']:.3f}")
    print(f"last answer: {out['edge'][0][2][:160]!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
