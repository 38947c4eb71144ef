"""The ``deploykit`` command line: train, convert, verify, serve-web, demo.

Library code raises ``DeployKitError`` (or ``edge.errors.EdgeError``); this module turns it into one line,
``Error: <message>``, on stderr and exit status 1. No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from convert import __version__, interrupt
from convert.show import print_artifacts, print_report, steps
from edge.console import ArgumentParser, one_line, rich_console, run_command


def _unraisable(unraisable: Any, previous: Callable[[Any], None] = sys.unraisablehook) -> None:
    """A Ctrl+C that lands in a ``__del__`` or a gc callback (TensorFlow has many) is printed by Python as
    "Exception ignored in ..." with a traceback, and the work goes on as if nothing happened. Remember it
    instead; the next progress step raises it, so the command stops as for any other Ctrl+C."""
    if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
        interrupt.note()
        return
    previous(unraisable)


# ---------------------------------------------------------------- commands

def cmd_train(args: argparse.Namespace, out, err) -> int:
    from convert.errors import DeployKitError
    from convert.train import save, train

    out_path = Path(args.out)
    if out_path.suffix != ".keras":
        raise DeployKitError(f"--out must end in .keras (got {args.out!r}); Keras 3 saves models as .keras files")
    # the checks save() makes, before the training rather than after it
    if out_path.is_dir():
        raise DeployKitError(f"cannot write {str(out_path)!r}: it is a folder; pass a FILE.keras path with --out")
    if not out_path.parent.is_dir():
        raise DeployKitError(f"cannot write {str(out_path)!r}: folder {str(out_path.parent)!r} does not exist; create it first")
    try:  # a read-only folder or file system: found now, not after the training
        tempfile.TemporaryFile(dir=out_path.parent).close()
    except OSError as exc:
        raise DeployKitError(f"cannot write {str(out_path)!r}: folder {str(out_path.parent)!r} is not writable "
                             f"({exc.strerror}); pass --out in a folder you can write") from None
    results = {}
    kinds = [args.model] if args.model == "linear" else ["linear", args.model]
    with steps(err) as step:
        for kind in kinds:
            step(f"Training the {kind} Boston model (seed {args.seed})")
            results[kind] = train(kind, seed=args.seed)
        step(f"Saving {out_path}")
        save(results[args.model].model, out_path)
    for kind, result in results.items():
        marker = "  (saved)" if kind == args.model else ""
        print(f"{kind:>6}: hold-out MAE {result.holdout_mae:.3f} medv ($1000s), {result.epochs} epochs{marker}", file=out)
    print(f"wrote {out_path}", file=out)
    return 0


def cmd_convert(args: argparse.Namespace, out, err) -> int:
    from convert.pipeline import ConvertOptions, convert

    features = [f.strip() for f in args.features.split(",")] if args.features else None
    options = ConvertOptions(model=Path(args.model), data=Path(args.data), out=Path(args.out), target=args.target,
                             name=args.name, force=args.force, features=features, seed=args.seed,
                             custom_objects=Path(args.custom_objects) if args.custom_objects else None,
                             labels=Path(args.labels) if args.labels else None, image_scale=args.image_scale)
    start = time.perf_counter()
    with steps(err) as step:
        result = convert(options, step)
    print_artifacts(rich_console(out), result.rows, f"Bundle {result.bundle} ({time.perf_counter() - start:.1f}s)")
    from edge.console import print_line

    for warning in result.warnings:  # a target with no artifact: the bundle still serves the other one
        print_line(f"Warning: {warning}", file=err)
    return 0


def cmd_verify(args: argparse.Namespace, out, err) -> int:
    """Run the parity engine; exit 0 when every artifact passes, or was rejected by convert, or cannot run in a
    runtime by its own declaration (both listed); 1 when an artifact convert accepted fails.

    Raises:
        DeployKitError / BundleError: bad bundle or arguments, a runtime that cannot run.
    """
    from convert.parity.engine import VerifyOptions, verify
    from edge.console import print_line

    options = VerifyOptions(Path(args.bundle), model=args.model and Path(args.model), runtimes=args.runtimes,
                            data=args.data and Path(args.data), target=args.target,
                            custom_objects=args.custom_objects and Path(args.custom_objects))
    with steps(err) as step:
        report = verify(options, progress=step)
    print_report(rich_console(out), report)
    print(f"wrote {report.bundle / 'parity.json'} and {report.bundle / 'report.html'}", file=out)
    for status, what in (("rejected", "rejected by convert (not served by default)"),
                         ("unsupported", "not run where unsupported")):
        listed = sorted({f"{r.artifact} on {r.runtime}" for r in report.by_status(status)})
        if listed:
            print(f"{len(listed)} {what}: {', '.join(listed)}", file=out)
    if not report.passed:
        failed = [f"{r.artifact} on {r.runtime}" for r in report.by_status("failed")]
        more = f" and {len(failed) - 3} more" if len(failed) > 3 else ""
        print_line(f"Error: parity failed for {', '.join(failed[:3])}{more}; see {report.bundle / 'report.html'}",
                   file=err)
        return 1
    return 0


def cmd_serve_web(args: argparse.Namespace, out, err) -> int:
    from convert.serve_web import serve_web

    serve_web(Path(args.bundle), port=args.port, host=args.host)
    return 0


def cmd_demo(args: argparse.Namespace, out, err) -> int:
    from convert.demo import run_demo
    from convert.errors import DeployKitError

    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise DeployKitError(f"--out {args.out!r} is a file; the demo needs a working folder: choose another --out")
    for flag, port in (("--web-port", args.web_port), ("--edge-port", args.edge_port)):
        if not 0 <= port <= 65535:
            raise DeployKitError(f"{flag} {port} is not a port number: pass 0-65535")

    return run_demo(args, out, err)


# ---------------------------------------------------------------- parser

def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="deploykit",
        description="Ship a Keras model to the browser (TFJS) and to edge devices (TFLite), and prove they agree.",
    )
    parser.add_argument("--version", action="version", version=f"deploykit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("train", help="train a built-in Boston reference model (.keras)")
    p.add_argument("--model", choices=["linear", "mlp"], default="linear", help="linear: the course's Dense(1); mlp: Normalization + MLP")
    p.add_argument("--out", required=True, help="where to save the model (FILE.keras)")
    p.add_argument("--seed", type=int, default=42, help="random seed (default 42)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("convert", help="convert a model into a bundle: TFJS + TFLite + manifest + golden data")
    p.add_argument("model", help="a Keras 3 .keras file (loaded with safe_mode) or a SavedModel folder")
    p.add_argument("--data", required=True, help="CSV (tabular: columns named as the features) or .npz (one array per input)")
    p.add_argument("--target", help="the label column of DATA (CSV) or the labels array (.npz)")
    p.add_argument("--features", help="comma-separated feature columns in the model's input order (default: DATA's columns but --target)")
    p.add_argument("--out", required=True, help="the bundle folder to write (atomically)")
    p.add_argument("--name", help="model name recorded in the manifest (default: the model's name)")
    p.add_argument("--seed", type=int, default=None, help="the seed the model was trained with, recorded in the manifest")
    p.add_argument("--force", action="store_true", help="replace an existing bundle")
    p.add_argument("--custom-objects", metavar="FILE.py",
                   help="your Python file that defines the model's custom layers/functions (imported only with this flag)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line, in output order (as many as the output has columns)")
    p.add_argument("--image-scale", metavar="LOW..HIGH",
                   help="pixel values 0..255 become LOW..HIGH for the model's image inputs, e.g. 0..1, -1..1, 0..255 "
                        "(default: detected from a leading Rescaling layer)")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("verify", help="check every artifact in its real runtime against the Keras model")
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("--model", help="the reference model (default: the model the bundle was converted from, if found)")
    p.add_argument("--custom-objects", metavar="FILE.py", help="your Python file defining --model's custom layers")
    p.add_argument("--runtimes", help="comma-separated runtimes to run (default: all)")
    p.add_argument("--data", help="also compare on a larger sample of this DATA")
    p.add_argument("--target", help="label column of --data, for the task metric")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("serve-web", help="serve BUNDLE/web on localhost")
    p.add_argument("bundle", help="the bundle folder")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 picks a free one)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.set_defaults(func=cmd_serve_web)

    p = sub.add_parser("demo", help="train -> convert -> verify the Boston model, then serve the page and the edge API")
    p.add_argument("--out", default="deploykit-demo", help="working folder (default ./deploykit-demo)")
    p.add_argument("--model", choices=["linear", "mlp"], default="mlp", help="which Boston model (default mlp)")
    p.add_argument("--no-serve", action="store_true", help="stop after verifying; do not start the servers")
    p.add_argument("--runtimes", help="runtimes for verify (default: all)")
    p.add_argument("--web-port", type=int, default=8080)
    p.add_argument("--edge-port", type=int, default=8000)
    p.set_defaults(func=cmd_demo)
    return parser


def _ignore_ctrl_c_from_now_on() -> None:
    """The command is over and its status decided. What is left is the interpreter's teardown (about a
    second of TensorFlow's C++ destructors after a convert), during which Python has already put SIGINT
    back to its default action: a Ctrl+C there killed the process with status 130 and no message, after
    a complete, successful run. An ignored SIGINT stays ignored through the teardown, so the exit status
    is the command's."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return the exit status.

    Called as the program (``argv`` None: the ``deploykit`` script, ``python -m convert``), a Ctrl+C that
    comes after the command finished is ignored (``_ignore_ctrl_c_from_now_on``); a caller that passes
    ``argv`` keeps its own SIGINT handling.
    """
    as_program = argv is None
    parser = build_parser()
    args = parser.parse_args(argv)
    from convert.quiet import native_output_to_log, silence_environment

    silence_environment()
    sys.unraisablehook = _unraisable
    log: list[Path | None] = [None]
    keep_log = [False]

    def command() -> int:
        with interrupt.noting_sigint(), native_output_to_log() as (out, err, log[0]):
            status = int(args.func(args, out, err) or 0)
            if as_program:
                _ignore_ctrl_c_from_now_on()
        return status

    def unexpected(exc: Exception) -> str:
        keep_log[0] = log[0] is not None
        where = f"; native library output in {log[0]}" if keep_log[0] else ""
        return (f"unexpected {type(exc).__name__}: {one_line(exc)} (rerun with DEPLOYKIT_DEBUG=1 for details and "
                f"please report it{where})")

    # A Ctrl+C is reported as one line and status 130, also when a library swallowed it and failed (or
    # raised an error of its own) instead: convert.interrupt notes every SIGINT during the command.
    try:
        return run_command(command, unexpected, interrupted=interrupt.pending,
                           debug=bool(os.environ.get("DEPLOYKIT_DEBUG")))
    finally:
        if as_program:  # an error's status too: it is printed, and a Ctrl+C now must not change it
            _ignore_ctrl_c_from_now_on()
        # The native log (TensorFlow's C++ output) only matters when something unexpected happened.
        if log[0] is not None and not keep_log[0]:
            with contextlib.suppress(OSError):
                log[0].unlink()


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
