"""``deploykit-edge``: serve, predict, selftest, info, drift.

Library errors (``EdgeError``) are printed as one line, ``Error: <message>``, on stderr; exit status 1.
No traceback reaches the user.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator, Sequence, TextIO

from edge import __version__
from edge.console import EXIT_ERROR, print_line, run_command
from edge.errors import EdgeError
from edge.text import printable


_print = print_line  # one line, control characters escaped (edge.console)


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


# --------------------------------------------------------------------------- serve


def _listen(host: str, port: int) -> list[socket.socket]:
    """Bind the listening sockets before anything is printed, so that a busy port or a bad address is
    one ``Error:`` line (uvicorn would log it and exit with status 3).

    Raises:
        EdgeError: the port is out of range, the address is unknown, or it cannot be bound.
    """
    if not 0 <= port <= 65535:
        raise EdgeError(f"--port {port} is not a port number; pass 0-65535 (0 picks a free port)")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise EdgeError(f"cannot listen on {host}:{port} ({exc.strerror}); pass an address of this machine with --host") from None
    sockets: list[socket.socket] = []
    seen = set()
    try:
        for family, kind, proto, _name, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:  # --port 0: the same free port on every address
                address = (address[0], sockets[0].getsockname()[1], *address[2:])
            sock.bind(address)
            sock.listen(2048)
            sock.set_inheritable(True)
    except OSError as exc:
        for sock in sockets:
            sock.close()
        raise EdgeError(f"cannot listen on {host}:{port} ({exc.strerror}); pick a free port with --port") from None
    return sockets


def _threads(predictor: Any) -> str:
    """The banner's interpreter threads: ``2 interpreter threads (auto: ...)``."""
    n = predictor.num_threads
    return f"{n} interpreter thread{'' if n == 1 else 's'} ({predictor.threads_reason})"


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the ASGI app under uvicorn until SIGTERM/SIGINT; exit 0 after a graceful stop."""
    import uvicorn

    from edge.http_protocol import EdgeProtocol, configure
    from edge.logs import check_writable
    from edge.runner import Predictor
    from edge.server import CONFIG_ENV, ServeConfig, build_app, limits

    if args.workers < 1:
        raise EdgeError("--workers must be at least 1")
    for flag, value in (("--max-body", args.max_body), ("--max-batch", args.max_batch),
                        ("--max-concurrency", args.max_concurrency), ("--drift-window", args.drift_window),
                        ("--log-max-bytes", args.log_max_bytes), ("--max-header-bytes", args.max_header_bytes),
                        ("--max-headers", args.max_headers), ("--max-connections", args.max_connections),
                        ("--threads", args.threads)):
        if value is not None and value < 1:
            raise EdgeError(f"{flag} must be at least 1 (got {value})")
    for flag, value in (("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout),
                        ("--keep-alive-timeout", args.keep_alive_timeout), ("--graceful-timeout", args.graceful_timeout)):
        if not value > 0:
            raise EdgeError(f"{flag} must be a number of seconds above 0 (got {value})")
    repository = not (Path(args.bundle) / "manifest.json").is_file()
    if args.workers > 1 and (repository or args.rollout_config):
        raise EdgeError("--workers N serves one bundle folder only; serve a model repository (MODELS/, "
                        "--rollout-config) with --workers 1: the canary's rollback, the shadow and the feedback "
                        "ids are kept per process")
    config = ServeConfig(bundle=str(args.bundle), variant=args.variant, host=args.host, port=args.port,
                         rollout_config=args.rollout_config, model=args.model,
                         workers=args.workers, allow_origins=list(args.allow_origin or []), log_dir=args.log_dir,
                         max_body=args.max_body, max_batch=args.max_batch, max_concurrency=args.max_concurrency,
                         drift_window=args.drift_window, log_max_bytes=args.log_max_bytes,
                         allow_rejected=args.allow_rejected, serve_unready=args.serve_unready,
                         forwarded_allow_ips=args.forwarded_allow_ips, max_header_bytes=args.max_header_bytes,
                         max_headers=args.max_headers, header_timeout=args.header_timeout,
                         body_timeout=args.body_timeout, keep_alive_timeout=args.keep_alive_timeout,
                         max_connections=args.max_connections, graceful_timeout=args.graceful_timeout,
                         threads=args.threads)
    configure(limits(config))
    common = dict(host=args.host, port=args.port, lifespan="on", access_log=False, log_level="warning",
                  server_header=False, date_header=False, http=EdgeProtocol,
                  timeout_graceful_shutdown=args.graceful_timeout, timeout_keep_alive=args.keep_alive_timeout,
                  h11_max_incomplete_event_size=args.max_header_bytes,
                  # the client column is the socket's peer; X-Forwarded-For only from the proxies named here
                  proxy_headers=bool(args.forwarded_allow_ips), forwarded_allow_ips=args.forwarded_allow_ips or None)
    if args.workers == 1:
        app = build_app(config)
        predictor = app.p
        target: Any = app
        uv_config = uvicorn.Config(target, **common)
    else:
        # fail here, cleanly, before forking workers
        predictor = Predictor(config.bundle, config.variant, num_threads=config.threads,
                              allow_rejected=config.allow_rejected)
        if config.log_dir:
            check_writable(config.log_dir)
        config.shared_dir = tempfile.mkdtemp(prefix="deploykit-edge-workers-")  # metrics/drift of all workers
        os.environ[CONFIG_ENV] = config.to_json()
    sockets = _listen(args.host, args.port)
    port = sockets[0].getsockname()[1]
    if args.workers > 1:  # uvicorn binds in the parent and forks; this was only the check
        for sock in sockets:
            sock.close()
        common["port"] = port
    shown = f"[{args.host}]" if ":" in args.host else args.host
    _print(
        f"deploykit-edge {__version__}: serving {predictor.bundle.name} {predictor.variant} "
        f"({predictor.artifact['path']}, sha256 {predictor.sha256[:12]}) with {predictor.runtime.describe()}, "
        f"{_threads(predictor)} on http://{shown}:{port} ({args.workers} worker{'s' if args.workers > 1 else ''})",
        file=sys.stderr, flush=True,
    )
    # uvicorn re-raises the signal that stopped it once shutdown is complete; absorb it so that a
    # graceful SIGTERM ends with status 0.
    stopped: list[int] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _f: stopped.append(s))
    if args.workers == 1:
        server = uvicorn.Server(uv_config)
        try:
            server.run(sockets=sockets)
        except SystemExit:  # uvicorn exits with status 3 when the app's startup fails
            server.started = False
        if not server.started and not stopped:
            raise EdgeError(f"the server on {args.host}:{port} did not start (see the log above); "
                            "check the bundle with `deploykit-edge selftest`")
    else:
        try:
            uvicorn.run("edge.server:app_from_env", factory=True, workers=args.workers, **common)
        finally:
            shutil.rmtree(config.shared_dir, ignore_errors=True)
    _print("deploykit-edge: stopped", file=sys.stderr, flush=True)
    return 0


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
            "default_variant": bundle.default_variant(runtime.name if runtime else None),
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
    _print(f"  interpreter here: {info['runtime'] or 'none'}; default variant: {info['default_variant']}")
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


def _serve_defaults() -> dict[str, Any]:
    """``ServeConfig``'s defaults: the one place the HTTP limits' defaults are written."""
    import dataclasses

    from edge.server import ServeConfig

    return {f.name: f.default for f in dataclasses.fields(ServeConfig)}


def build_parser() -> argparse.ArgumentParser:
    _SERVE_DEFAULTS = _serve_defaults()
    parser = argparse.ArgumentParser(
        prog="deploykit-edge",
        description="Serve and check a deploykit bundle's TFLite model on a device, without TensorFlow.")
    parser.add_argument("--version", action="version", version=f"deploykit-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    variant_help = ("float32, float16, dynamic, int8, int16x8 (fp32/fp16 accepted); default: the most precise that convert "
                    "accepted and that passed parity, else float32")
    rejected_help = "use a variant that convert rejected (it missed its tolerance; see `deploykit-edge info`)"

    s = sub.add_parser("serve", help="serve the model over HTTP (ASGI under uvicorn)")
    s.add_argument("bundle", metavar="BUNDLE|MODELS", help="one bundle folder, or MODELS/ (MODELS/NAME/VERSION/ each a bundle)")
    s.add_argument("--rollout-config", metavar="FILE",
                   help="labels, canary, shadow, fallback, rollback, feedback (default MODELS/rollout.json)")
    s.add_argument("--model", metavar="NAME", help="the model /predict_json and the form answer with (default: the only one)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--variant", help=variant_help)
    s.add_argument("--allow-rejected", action="store_true", help=rejected_help)
    s.add_argument("--serve-unready", action="store_true",
                   help="answer predictions even when the start-up self-test failed (/readyz still says 503)")
    s.add_argument("--workers", type=int, default=1, help="worker processes, each with its own interpreter")
    s.add_argument("--threads", type=int, default=None, metavar="N",
                   help="the interpreter's threads. Default: measured per model at start-up: a model slower than "
                        "1 ms a prediction with 1 thread is timed with every CPU and gets them when that is at "
                        "least 10%% faster; a faster model (tabular) keeps 1. The banner says what was chosen. "
                        "A model slower than 2 ms a prediction runs off the event loop, so health and metrics "
                        "answer while it works")
    s.add_argument("--allow-origin", action="append", metavar="URL", help="allow CORS from this origin (repeatable)")
    s.add_argument("--log-dir", metavar="DIR", help="write requests.csv and predictions.csv here")
    s.add_argument("--max-body", type=int, default=_SERVE_DEFAULTS["max_body"], metavar="BYTES", help="request body limit (default 1 MB)")
    s.add_argument("--max-batch", type=int, default=1000, metavar="ROWS", help="rows per request (default 1000)")
    s.add_argument("--max-concurrency", type=int, default=64, metavar="N",
                   help="requests in flight per worker before answering 503 (default 64)")
    s.add_argument("--drift-window", type=int, default=500, metavar="ROWS", help="recent rows tested for drift")
    s.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, metavar="BYTES", help="rotate logs at this size")
    s.add_argument("--max-header-bytes", type=int, default=_SERVE_DEFAULTS["max_header_bytes"], metavar="BYTES",
                   help="request line + headers limit, answered 431 (default 16384)")
    s.add_argument("--max-headers", type=int, default=_SERVE_DEFAULTS["max_headers"], metavar="N", help="header lines per request, 431 over (default 64)")
    s.add_argument("--header-timeout", type=float, default=_SERVE_DEFAULTS["header_timeout"], metavar="SECONDS",
                   help="time to receive a request's headers, new connections included; 408 after (default 5)")
    s.add_argument("--body-timeout", type=float, default=_SERVE_DEFAULTS["body_timeout"], metavar="SECONDS",
                   help="time to receive a request's body once its headers are in; 408 after (default 10)")
    s.add_argument("--keep-alive-timeout", type=float, default=_SERVE_DEFAULTS["keep_alive_timeout"], metavar="SECONDS",
                   help="an idle keep-alive connection is closed after this (default 5)")
    s.add_argument("--max-connections", type=int, default=_SERVE_DEFAULTS["max_connections"], metavar="N",
                   help="open connections per worker; over it the oldest idle one is closed, or the new one "
                        "answered 503 (default 256)")
    s.add_argument("--graceful-timeout", type=float, default=_SERVE_DEFAULTS["graceful_timeout"], metavar="SECONDS",
                   help="on SIGTERM, time given to requests in flight; stalled ones are answered 503 (default 30)")
    s.add_argument("--forwarded-allow-ips", metavar="IPS",
                   help="comma-separated proxy addresses (or *) whose X-Forwarded-For/-Proto are trusted for the "
                        "logged client address (default: none; the client is the socket's peer)")
    s.set_defaults(func=cmd_serve)

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
    d.add_argument("--alpha", type=float, default=0.01, help="p-value below which a feature is flagged")
    d.add_argument("--last", type=int, default=None, metavar="ROWS", help="only the last ROWS logged rows")
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
