"""``deploykit-edge``: serve, predict, selftest, status, info, drift.

``serve`` (its flags, checks, listening sockets and banner) is ``edge.serve_cli``; the other commands are
here. Library errors (``EdgeError``) are printed as one line, ``Error: <message>``, on stderr; exit status 1.
No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from edge import __version__
from edge.console import EXIT_ERROR, ArgumentParser, print_line, run_command
from edge.errors import EdgeError
from edge.serve_cli import add_serve_parser
from edge.text import printable


_print = print_line  # one line, control characters escaped (edge.console)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- predict


@contextlib.contextmanager
def _open(path: str, mode: str, std: TextIO) -> Iterator[TextIO]:
    """A text file (``-``: stdin/stdout); input is read as UTF-8 with or without a byte-order mark."""
    encoding = "utf-8-sig" if "r" in mode else "utf-8"
    if path == "-":
        if "r" in mode and hasattr(std, "buffer"):
            yield io.TextIOWrapper(std.buffer, encoding=encoding, newline="")
        else:
            yield std
        return
    if "r" in mode and os.path.isdir(path):
        raise EdgeError(f"cannot open {path}: Is a directory")
    try:
        handle = open(path, mode, encoding=encoding, newline="")
    except OSError as exc:
        raise EdgeError(f"cannot open {path}: {exc.strerror}") from None
    with handle:
        yield handle


def cmd_predict(args: argparse.Namespace) -> int:
    """Batch predictions; exit 1 when some rows could not be predicted (they are reported)."""
    import csv

    from edge.batch import predict_file
    from edge.runner import Predictor

    predictor = Predictor(args.bundle, args.variant, allow_rejected=args.allow_rejected)
    shown = "stdin" if args.input == "-" else args.input
    if "-" not in (args.input, args.output) and os.path.exists(args.input) and os.path.exists(args.output) \
            and os.path.samefile(args.input, args.output):
        raise EdgeError(f"--output {args.output} is the --input file, which writing would erase; choose another --output")
    with _open(args.input, "r", sys.stdin) as source, _open(args.output, "w", sys.stdout) as sink:
        try:
            result = predict_file(predictor, source, sink)
        except UnicodeDecodeError as exc:
            raise EdgeError(f"--input {shown} is not UTF-8 text (it holds the byte 0x{exc.object[exc.start]:02x}); "
                            "give a CSV or JSON lines file saved as UTF-8") from None
        except csv.Error as exc:
            raise EdgeError(f"--input {shown} is not a readable CSV ({exc}); fix the file") from None
        except RecursionError:
            raise EdgeError(f"--input {shown} has a JSON line nested too deeply to read; give one flat object per line") from None
    for message in result.errors:
        _print(f"bad row: {message}", file=sys.stderr)
    if result.errors:
        rest = {0: "no row was predicted", 1: "the other 1 was written"}.get(
            result.predicted, f"the other {result.predicted} were written")
        raise EdgeError(f"{len(result.errors)} of {result.rows} rows could not be predicted (listed above); {rest}")
    _print(f"predicted {result.predicted} row{'' if result.predicted == 1 else 's'} with {predictor.variant} on "
          f"{predictor.runtime.describe()}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- selftest


def cmd_selftest(args: argparse.Namespace) -> int:
    """Run golden.json; exit 0 only when every output is within the variant's tolerance."""
    from edge import selftest
    from edge.runner import Predictor

    predictor = Predictor(args.bundle, args.variant, allow_rejected=args.allow_rejected)
    result = selftest.run(predictor)
    tol = result["tolerance"]
    tol_text = ", ".join(f"{k}={v}" for k, v in tol.items())
    _print(f"selftest {predictor.bundle.name}: {result['artifact']} ({result['variant']}) on {result['runtime']}, "
          f"{result['rows']} golden rows, tolerance {tol_text}")
    for name, m in result["outputs"].items():
        mark = "ok  " if m["passed"] else "FAIL"
        twin = f" twin_scaled={_fmt(m['twin_scaled'])}" if "twin_scaled" in m else ""
        _print(f"  {mark} {name}: max_abs={_fmt(m['max_abs'])} max_scaled={_fmt(m['max_scaled'])} "
              f"range_fraction={_fmt(m['range_fraction'])}{twin}" + (f"  ({m['reason']})" if m["reason"] else ""))
    if args.json:
        print(json.dumps(result, default=str))
    if not result["passed"]:
        raise EdgeError(f"selftest failed: {'; '.join(result['failures'])}")
    _print("selftest passed")
    return 0


# --------------------------------------------------------------------------- info


def cmd_status(args: argparse.Namespace) -> int:
    """Print a model repository as ``serve`` sees it: each version loaded, checked and self-tested (its
    state, or why it failed), the labels, the config. Exit 1 when a model has no AVAILABLE version."""
    from edge.repository import NotServed
    from edge.server import ServeConfig
    from edge.server.served import open_repository

    config = ServeConfig(bundle=str(args.models), variant=args.variant, rollout_config=args.rollout_config,
                         allow_rejected=args.allow_rejected)
    repo = open_repository(config)
    info = repo.describe()
    if args.json:
        print(json.dumps(info, indent=1))  # json.dumps escapes control characters itself
    else:
        where = f"config {printable(info['config'])}" if info["config"] else "no rollout config"
        _print(f"repository {printable(info['root'])} ({where}; scanned every {info['poll_seconds']:g} s)")
        if info["config_error"]:
            _print(f"  config error: {printable(info['config_error'])}")
        for name, model in info["models"].items():
            _print(f"model {printable(name)}")
            for v in model["versions"]:
                error = v["status"]["error_message"]
                detail = f"  {printable(v.get('variant', ''))}" if v["state"] == "AVAILABLE" else ""
                _print(f"  version {v['version']:>4}  {v['state']:<9}{detail}" + (f"  {printable(error)}" if error else ""))
            labels = ", ".join(f"{printable(k)} -> {n}" for k, n in sorted(model["labels"].items())) or "none"
            _print(f"  labels: {labels}")
            for label, note in sorted(model["label_notes"].items()):
                _print(f"  label {printable(label)}: {printable(note)}")
    missing = []
    for name in repo.models:
        try:
            repo.resolve(name)
        except NotServed:
            missing.append(name)
    return 1 if missing else 0


def cmd_info(args: argparse.Namespace) -> int:
    """Show what is in a bundle and whether this device can run each TFLite artifact."""
    from edge import manifest as mf
    from edge.bundle import Bundle
    from edge.errors import BundleError
    from edge.interpreter import can_run, pick

    bundle = Bundle.open(args.bundle)
    m = bundle.manifest
    try:
        runtime = pick()
    except EdgeError as exc:
        runtime = None
        runtime_note = str(exc)
    rows = []
    for a in bundle.tflite_artifacts():
        try:
            mf.check_file(bundle.root, a["path"], a["sha256"], a["bytes"])
            sha_state = "ok"
        except BundleError as exc:
            sha_state = "missing" if "missing" in str(exc) else "MISMATCH"
        ok, reason = can_run(a, runtime.name, runtime.version) if runtime else (False, runtime_note)
        rows.append({"variant": a["variant"], "path": a["path"], "bytes": a["bytes"], "sha256": a["sha256"],
                     "file": sha_state, "parity": bundle.passed_parity(a), "runs_here": ok, "reason": reason,
                     "min_tflite_runtime": (a.get("runtime") or {}).get("min_tflite_runtime"),
                     "ops": (a.get("runtime") or {}).get("ops"), "input_transform": bool(a.get("input_transform")),
                     "note": a.get("note", ""), "status": a.get("status", "accepted"),
                     "rejection": a.get("rejection")})
    info = {"name": m["name"], "task": m["task"], "created": m["created"],
            "inputs": m["inputs"], "outputs": [{k: o[k] for k in ("name", "key", "dtype", "shape", "range")} for o in m["outputs"]],
            "features": [{k: f[k] for k in ("name", "label", "unit", "input", "index", "min", "max", "mean")} for f in m.get("features") or []],
            "default_variant": bundle.default_variant(runtime.name if runtime else None) if rows else None,
            "runtime": runtime.describe() if runtime else None, "artifacts": rows,
            "golden": bundle.golden_path.is_file(), "versions": m["versions"],
            "parity": None if not m.get("parity") else {"passed": m["parity"].get("passed"), "at": m["parity"].get("at")}}
    if args.json:
        print(json.dumps(info, indent=1))
        return 0
    _print(f"bundle {m['name']} ({m['task']}), created {m['created']}, folder {bundle.root}")
    for t in m["inputs"]:
        _print(f"  input  {t['name']}: {t['dtype']} {t['shape']}")
    for o in info["outputs"]:
        _print(f"  output {o['name']} (key {o['key']}): {o['dtype']} {o['shape']}, reference range {o['range']}")
    for f in info["features"]:
        unit = f" {f['unit']}" if f.get("unit") else ""
        _print(f"  feature {f['name']}: {f['label']}{unit}, training range {_fmt(f['min'])} to {_fmt(f['max'])}")
    _print(f"  golden.json: {'present' if info['golden'] else 'MISSING'}")
    parity = info["parity"]
    _print(f"  parity: {'not verified' if parity is None else ('passed' if parity['passed'] else 'FAILED')}")
    default = info["default_variant"] or "none (no TFLite artifact: convert could not write one)"
    _print(f"  interpreter here: {info['runtime'] or 'none'}; default variant: {default}")
    for skip in m.get("skipped") or []:
        what = " ".join(str(skip.get(k)) for k in ("format", "variant") if skip.get(k))
        _print(f"  not written: {what}: {' '.join(str(skip.get('reason', '')).split())[:300]}")
    for r in rows:
        ops = ", ".join(f"{o['name']} v{o['version']}" for o in r["ops"] or [])
        _print(f"  {r['variant']:8} {r['path']}  {r['bytes']:,} B  sha256 {r['sha256'][:12]} file {r['file']}"
              f"  parity {'passed' if r['parity'] else '-'}  runs here: {'yes' if r['runs_here'] else 'NO'}"
              f"  needs TFLite >= {r['min_tflite_runtime'] or '?'}" + (f"  ops: {ops}" if ops else ""))
        if not r["runs_here"]:
            _print(f"           {r['reason']}")
        if r["status"] == "rejected":
            _print(f"           REJECTED by convert: {r['rejection'] or 'it missed its tolerance'} (serve needs --allow-rejected)")
        if r["note"]:
            _print(f"           note: {r['note']}")
    return 0


# --------------------------------------------------------------------------- drift


def cmd_drift(args: argparse.Namespace) -> int:
    """Drift of a logged period (prediction log CSVs) against the manifest's training samples."""
    from edge.bundle import Bundle
    from edge.offline import drift_of_logs

    bundle = Bundle.open(args.bundle)
    report = drift_of_logs(Path(args.log), bundle.manifest, alpha=args.alpha, last=args.last)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    _print(f"drift of {report['rows']} logged rows ({len(report['files'])} file(s)) against the training sample, "
          f"alpha {report['alpha']}:")
    for f in report["features"]:
        if f["statistic"] is None:
            _print(f"  {f['feature']:12} no values")
            continue
        flag = "DRIFT" if f["drifted"] else "ok"
        _print(f"  {f['feature']:12} KS={f['statistic']:.4f} p={f['p_value']:.3g} n={f['n']}  {flag}")
    if report["skipped_cells"]:
        _print(f"  ({report['skipped_cells']} non-numeric cells skipped)")
    _print("drift detected" if report["drifted"] else "no drift detected")
    return 0


# --------------------------------------------------------------------------- parser


def probability(text: str) -> float:
    """argparse type: a number strictly between 0 and 1.

    Raises:
        argparse.ArgumentTypeError: anything else (argparse makes it the one usage line).
    """
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a probability: pass a number between 0 and 1, such as 0.01")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1.

    Raises:
        argparse.ArgumentTypeError: anything else.
    """
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="deploykit-edge",
        description="Serve and check a deploykit bundle's TFLite model on a device, without TensorFlow.")
    parser.add_argument("--version", action="version", version=f"deploykit-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    variant_help = ("float32, float16, dynamic, int8, int16x8 (fp32/fp16 accepted); default: the most precise that convert "
                    "accepted and that passed parity, else float32")
    rejected_help = "use a variant that convert rejected (it missed its tolerance; see `deploykit-edge info`)"

    add_serve_parser(sub, variant_help, rejected_help)

    p = sub.add_parser("predict", help="batch predictions from CSV or JSON lines to CSV")
    p.add_argument("bundle", metavar="BUNDLE")
    p.add_argument("--variant", help=variant_help)
    p.add_argument("--allow-rejected", action="store_true", help=rejected_help)
    p.add_argument("--input", required=True, metavar="FILE|-")
    p.add_argument("--output", default="-", metavar="FILE|-")
    p.set_defaults(func=cmd_predict)

    t = sub.add_parser("selftest", help="run golden.json; exit 0 only when within the variant's tolerance")
    t.add_argument("bundle", metavar="BUNDLE")
    t.add_argument("--variant", help=variant_help)
    t.add_argument("--allow-rejected", action="store_true", help=rejected_help)
    t.add_argument("--json", action="store_true", help="also print the full result as JSON")
    t.set_defaults(func=cmd_selftest)

    st = sub.add_parser("status", help="show a model repository (MODELS/) as serve sees it")
    st.add_argument("models", metavar="MODELS|BUNDLE")
    st.add_argument("--rollout-config", metavar="FILE", help="default MODELS/rollout.json")
    st.add_argument("--variant", help=variant_help)
    st.add_argument("--allow-rejected", action="store_true", help=rejected_help)
    st.add_argument("--json", action="store_true", help="print the repository as JSON (GET /v1/repository's body)")
    st.set_defaults(func=cmd_status)
    i = sub.add_parser("info", help="show what is in a bundle")
    i.add_argument("bundle", metavar="BUNDLE")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    d = sub.add_parser("drift", help="input drift of a logged period against the training data")
    d.add_argument("log", metavar="LOG", help="a predictions CSV log, or the log folder (rotated files included)")
    d.add_argument("--bundle", required=True, metavar="BUNDLE")
    d.add_argument("--alpha", type=probability, default=0.01, help="p-value below which a feature is flagged (0 < ALPHA < 1)")
    d.add_argument("--last", type=positive_int, default=None, metavar="ROWS", help="only the last ROWS logged rows")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=cmd_drift)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``deploykit-edge``; returns the exit status (``edge.console.run_command``: one
    ``Error:`` line and 1, ``Error: interrupted`` and 130 for a Ctrl+C)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", category=RuntimeWarning)  # numpy overflow notes: results are checked
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(lambda: args.func(args), lambda exc: f"unexpected {type(exc).__name__}: {exc}; please report it")
