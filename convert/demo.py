"""``deploykit demo``: train -> convert -> verify the Boston model, then serve the page and the edge API.

It is the README's main command: one run shows the whole kit on the built-in data.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from convert.data import BOSTON_CSV


def run_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run the demo; return the exit status (1 when parity fails).

    Raises:
        DeployKitError: a step fails (unwritable folder, port in use, ...).
    """
    from convert.parity.engine import VerifyOptions, verify
    from convert.pipeline import ConvertOptions, convert
    from convert.show import print_artifacts, print_report, steps
    from convert.train import save, train
    from edge.console import rich_console

    work = Path(args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    model_path = work / f"boston_{args.model}.keras"
    bundle = work / "bundle"
    with steps(err) as step:
        step(f"Training the Boston {args.model} model (seed 42)")
        trained = train(args.model, seed=42)
        save(trained.model, model_path)
        options = ConvertOptions(model=model_path, data=BOSTON_CSV, out=bundle, target="medv", force=True, seed=42)
        result = convert(options, step)
    print(f"{args.model}: hold-out MAE {trained.holdout_mae:.3f} medv ($1000s); model {model_path}", file=out)
    print_artifacts(rich_console(out), result.rows, f"Bundle {bundle}")

    with steps(err) as step:
        report = verify(VerifyOptions(bundle, model=model_path, runtimes=args.runtimes), progress=step)
    print_report(rich_console(out), report)
    print(f"parity: {'PASS' if report.passed else 'FAIL'}; see {bundle / 'report.html'}", file=out)
    status = 0 if report.passed else 1

    if args.no_serve:
        return status
    return _serve(bundle, args, out) or status


def _serve(bundle: Path, args: argparse.Namespace, out: TextIO) -> int:
    """Serve the page (in this process) and the edge API (a ``deploykit-edge serve`` child) until Ctrl-C."""
    from convert.serve_web import serve_in_thread

    server, web_url = serve_in_thread(bundle / "web", port=args.web_port)
    origin = web_url.split("/", 3)[:3]
    edge = subprocess.Popen(
        [sys.executable, "-m", "edge", "serve", str(bundle), "--port", str(args.edge_port),
         "--allow-origin", "/".join(origin)],
        stdin=subprocess.DEVNULL,
    )
    edge_url = f"http://127.0.0.1:{args.edge_port}"
    print(f"\nThe page:      {web_url}  (try 'Check this device'; compare with the edge server at {edge_url})", file=out)
    print(f"The edge API:  curl -X POST -H 'Content-Type: application/json' --data '[6, 250, 66.5]' {edge_url}/predict_json", file=out)
    print(f"Parity report: {bundle / 'report.html'}", file=out)
    print("Press Ctrl-C to stop.", file=out)
    try:
        while edge.poll() is None:
            time.sleep(0.5)
        print(f"the edge server stopped (exit {edge.returncode})", file=out)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        if edge.poll() is None:
            edge.send_signal(signal.SIGTERM)
            try:
                edge.wait(timeout=10)
            except subprocess.TimeoutExpired:
                edge.kill()
