"""The one-row fast path side by side (issue 12): the bare-ASGI ceiling (two sends, as ``edge_bench.py``'s),
the same constant app answering in one write as the fast path does (``ceiling_1w``), this tree's single-bundle server,
its 10 % canary repository and (``--before-tree PATH``) another tree's single-bundle server, loaded in
turn by the same generator as ``bench/edge_bench.py`` (its functions: wrk, 8 connections), ``--rounds``
rounds of ``--duration`` s. Only the servers' part of ``edge_bench.py`` (no Keras baseline, no start-up, no
memory): a quick way to compare trees. Printed: requests/s (median over the rounds), edge / ceiling,
canary / single, this tree / the other, and the server CPU per request.

    python bench/fastpath_ab.py --bundle B [--before-tree /work/main] [--rounds 5] [--duration 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

import edge_bench as eb  # noqa: E402


#: the ceiling app answering in one write as the fast path does (``edge.http_protocol.answer_whole``), else
#: with the two sends: the ceiling of a server whose answers leave in one write
_SEND_START = '    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})'
CEILING_ONE_WRITE = eb.CEILING_APP.replace(_SEND_START, "\n".join([
    '    protocol = scope.get("edge.answer")',
    '    if protocol is not None:',
    '        from edge.http_protocol import answer_whole',
    '        if answer_whole(protocol, scope, HEAD, BODY):',
    '            return',
    _SEND_START])).replace(
    "async def app(", 'HEAD = b"HTTP/1.1 200 OK\\r\\n" + b"".join(n + b": " + v + b"\\r\\n" for n, v in HEADERS) + b"\\r\\n"\n\n'
    "async def app(")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--before-tree", type=Path, metavar="PATH")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--python-client", action="store_true")
    parser.add_argument("--no-canary", action="store_true")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fastpath_ab_"))
    (work / "ceiling.py").write_text(eb.CEILING_APP)
    assert CEILING_ONE_WRITE.count("answer_whole") == 2
    (work / "ceiling_one_write.py").write_text(CEILING_ONE_WRITE)
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(eb.free_port())
    ceiling_port, edge_port, canary_port, before_port, one_port = sorted(ports)
    py = sys.executable
    servers: dict[str, tuple] = {
        "ceiling": ([py, str(work / "ceiling.py"), str(ceiling_port), "1", str(REPO)], ceiling_port),
        "ceiling_1w": ([py, str(work / "ceiling_one_write.py"), str(one_port), "1", str(REPO)], one_port),
        "edge": ([py, "-m", "edge", "serve", str(args.bundle), "--port", str(edge_port)], edge_port,
                 {**eb.ENV, "PYTHONPATH": str(REPO)}, REPO),
    }
    if not args.no_canary:
        repo = eb.make_repository(work / "canary", args.bundle, 2, {"labels": {"stable": 1, "canary": 2},
                                                                     "canary": {"share": 0.1}})
        servers["edge_canary"] = ([py, "-m", "edge", "serve", str(repo), "--port", str(canary_port)], canary_port,
                                  {**eb.ENV, "PYTHONPATH": str(REPO)}, REPO)
    if args.before_tree is not None:
        before = args.before_tree.resolve()
        servers["edge_before"] = ([py, "-m", "edge", "serve", str(args.bundle), "--port", str(before_port)], before_port,
                                  {**eb.ENV, "PYTHONPATH": str(before)}, before)
        eb.compile_bytecode(before)
    eb.compile_bytecode(REPO)
    results = eb.measure_servers(servers, args, args.rounds)
    print()
    for name, r in results.items():
        cpu = r["cpu_us_per_request"]
        print(f"{name:12} {r['rps']:9.0f} req/s  p99 {r['p99_ms']:6.2f} ms  cpu {cpu if cpu is None else round(cpu, 1)} us/req"
              f"   rounds {' '.join(str(round(x['rps'])) for x in r['rounds'])}")
    c = results["ceiling"]["rps"]
    per_round = [e["rps"] / ce["rps"] for e, ce in zip(results["edge"]["rounds"], results["ceiling"]["rounds"])]
    print(f"edge / ceiling {results['edge']['rps'] / c:.3f} (per round {' '.join(f'{x:.3f}' for x in per_round)})")
    if "edge_before" in results:
        b = [e["rps"] / ce["rps"] for e, ce in zip(results["edge_before"]["rounds"], results["ceiling"]["rounds"])]
        print(f"before / ceiling {results['edge_before']['rps'] / c:.3f} (per round {' '.join(f'{x:.3f}' for x in b)}); "
              f"edge / before {results['edge']['rps'] / results['edge_before']['rps']:.3f}")
    one = [e["rps"] / ce["rps"] for e, ce in zip(results["edge"]["rounds"], results["ceiling_1w"]["rounds"])]
    print(f"edge / one-write ceiling {results['edge']['rps'] / results['ceiling_1w']['rps']:.3f} "
          f"(per round {' '.join(f'{x:.3f}' for x in one)})")
    if "edge_canary" in results:
        print(f"canary / single {results['edge_canary']['rps'] / results['edge']['rps']:.3f}")
    print(f"median of edge/ceiling per round {statistics.median(per_round):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
