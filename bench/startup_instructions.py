"""Instructions (valgrind's callgrind count, which a loaded machine does not disturb) of the serve path, side by
side for several trees: ``start``, a fresh interpreter from the CLI's parser to the first one-row answer in
process (what `deploykit-edge serve BUNDLE` runs before uvicorn's loop; uvicorn's own start is the same for
every tree), and ``request``, the instructions of one more one-row request through ``EdgeApp`` (from runs of
0 and ``--requests`` requests). Slow: about a minute a run on the 2-core machine.

    python bench/startup_instructions.py --bundle B --tree /tmp/this --tree /tmp/main [--requests 20000]

A tree is started from its own folder with PYTHONPATH set to it and PYTHONDONTWRITEBYTECODE=1 (a run
writes no bytecode, so both runs of a tree are alike); compile its bytecode first (``python -m compileall -q
TREE/edge``) to measure it as installed.

Raises:
    RuntimeError: valgrind is not installed, or a run failed.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

START = textwrap.dedent('''
    import asyncio, sys
    from edge.cli import build_parser
    build_parser()
    import uvicorn
    import edge
    from edge.serve_cli import serving_app
    from edge.server import ServeConfig
    app = serving_app(ServeConfig(bundle=sys.argv[1]))
    app.startup()
    banner = f"{edge.__version__} {app.p.variant} {app.p.sha256[:12]} {app.p.runtime.describe()}"
    SCOPE = {"type": "http", "method": "POST", "path": "/predict_json", "client": ("127.0.0.1", 5000),
             "query_string": b"", "headers": [(b"host", b"x"), (b"content-type", b"application/json"),
                                              (b"content-length", b"14")]}
    MESSAGE = {"type": "http.request", "body": b"[6, 250, 66.5]", "more_body": False}

    async def receive():
        return MESSAGE

    async def send(message):
        return None

    async def drive(n):
        for _ in range(n):
            await app(dict(SCOPE), receive, send)

    asyncio.run(drive(int(sys.argv[2])))
''')


def instructions(tree: Path, bundle: Path, requests: int, work: Path) -> int:
    """The instructions valgrind counts for one run of ``START`` from ``tree`` with ``requests`` requests.

    Raises:
        RuntimeError: the run failed or valgrind printed no count.
    """
    script = work / "start.py"
    script.write_text(START)
    out = work / "callgrind.out"
    done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, str(script),
                           str(bundle), str(requests)], cwd=tree, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"})
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{tree}: {done.stderr[-1500:]}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--tree", type=Path, action="append", required=True)
    parser.add_argument("--requests", type=int, default=20000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        raise RuntimeError("valgrind is not installed (apt-get install -y valgrind)")
    work = Path(tempfile.mkdtemp(prefix="startup_instructions_"))
    try:
        print(f"{'tree':32} {'start (M instr)':>16} {'request (instr)':>16}")
        for tree in args.tree:
            tree = tree.resolve()
            start = instructions(tree, args.bundle.resolve(), 0, work)
            more = instructions(tree, args.bundle.resolve(), args.requests, work) if args.requests else start
            per = (more - start) / args.requests if args.requests else 0.0
            print(f"{str(tree):32} {start / 1e6:16.0f} {per:16.0f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
