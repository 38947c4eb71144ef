"""``deploykit-edge serve``: its flags (the argument table), their checks, the listening sockets, the
start-up banner and the run under uvicorn. ``edge.cli`` adds the table to its parser
(``add_serve_parser``) and runs ``cmd_serve``; library errors are ``EdgeError`` (one ``Error:`` line there).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from edge import __version__
from edge.console import print_line
from edge.errors import EdgeError

_print = print_line  # one line, control characters escaped (edge.console)

MAX_WORKERS = 64
MAX_COUNT = 2**40  # sizes and counts (bytes, rows, connections): a terabyte is no limit already
MAX_SECONDS = 86_400  # timeouts: a day


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


def serving_app(config: Any) -> Any:
    """The app ``serve`` runs with one worker, made as it makes it: the HTTP protocol's limits configured from
    ``config`` (a ``ServeConfig``), then the ``EdgeApp`` built. Its start-up self-test runs at the lifespan's
    startup (``app.startup()`` in process, as bench/startup_*.py and the start-up tests do).

    Raises:
        EdgeError: the bundle, model repository or rollout config cannot be loaded.
    """
    from edge.http_protocol import configure
    from edge.server import build_app, limits

    configure(limits(config))
    return build_app(config)


def cmd_serve(args: argparse.Namespace) -> int:
    """Run the ASGI app under uvicorn until SIGTERM/SIGINT; exit 0 after a graceful stop."""
    import uvicorn

    from edge.http_protocol import EdgeProtocol, configure
    from edge.logs import check_writable
    from edge.runner import Predictor
    from edge.server import CONFIG_ENV, ServeConfig, limits

    if not 1 <= args.workers <= MAX_WORKERS:
        raise EdgeError(f"--workers must be from 1 to {MAX_WORKERS} (got {args.workers}); one a core is the usual choice")
    if not args.host.strip():
        raise EdgeError("--host is empty, which listens on every interface; pass 127.0.0.1, or 0.0.0.0 to mean every one")
    for flag, value in (("--max-body", args.max_body), ("--max-batch", args.max_batch),
                        ("--max-concurrency", args.max_concurrency), ("--drift-window", args.drift_window),
                        ("--log-max-bytes", args.log_max_bytes), ("--max-header-bytes", args.max_header_bytes),
                        ("--max-headers", args.max_headers), ("--max-connections", args.max_connections),
                        ("--threads", args.threads)):
        if value is not None and not 1 <= value <= MAX_COUNT:
            raise EdgeError(f"{flag} must be from 1 to {MAX_COUNT:,} (got {value})")
    for flag, value in (("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout),
                        ("--keep-alive-timeout", args.keep_alive_timeout), ("--graceful-timeout", args.graceful_timeout)):
        if not 0 < value <= MAX_SECONDS:  # inf and NaN too: a timeout that never fires protects nothing
            raise EdgeError(f"{flag} must be a number of seconds above 0 and at most {MAX_SECONDS:,} (got {value})")
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
    common = dict(host=args.host, port=args.port, lifespan="on", access_log=False, log_level="warning",
                  server_header=False, date_header=False, http=EdgeProtocol,
                  timeout_graceful_shutdown=args.graceful_timeout, timeout_keep_alive=args.keep_alive_timeout,
                  h11_max_incomplete_event_size=args.max_header_bytes,
                  # the client column is the socket's peer; X-Forwarded-For only from the proxies named here
                  proxy_headers=bool(args.forwarded_allow_ips), forwarded_allow_ips=args.forwarded_allow_ips or None)
    if args.workers == 1:
        app = serving_app(config)
        predictor = app.p
        subject = app.subject  # a repository's model folder and version, not the manifest's name
        target: Any = app
        uv_config = uvicorn.Config(target, **common)
    else:
        configure(limits(config))
        # fail here, cleanly, before forking workers
        predictor = Predictor(config.bundle, config.variant, num_threads=config.threads,
                              allow_rejected=config.allow_rejected)
        subject = predictor.bundle.name
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
        f"deploykit-edge {__version__}: serving {subject} {predictor.variant} "
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


def _serve_defaults() -> dict[str, Any]:
    """``ServeConfig``'s defaults: the one place the HTTP limits' defaults are written."""
    import dataclasses

    from edge.server.config import ServeConfig

    return {f.name: f.default for f in dataclasses.fields(ServeConfig)}


_ORIGIN = re.compile(r"^https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)(:[0-9]{1,5})?$")


def origin(text: str) -> str:
    """argparse type of ``--allow-origin``: an origin as a browser sends it (``http(s)://host[:port]``, no path).

    Raises:
        argparse.ArgumentTypeError: anything else (a path, a comma list, CR/LF, ``javascript:``): it could never
            match a browser's Origin header, so nothing would be allowed, silently.
    """
    if not _ORIGIN.match(text):
        raise argparse.ArgumentTypeError(f"{text[:80]!r} is not an origin: pass scheme://host[:port] such as "
                                         "https://example.org, once per origin")
    return text


def proxy_addresses(text: str) -> str:
    """argparse type of ``--forwarded-allow-ips``: ``*`` or comma-separated IP addresses and networks.

    Raises:
        argparse.ArgumentTypeError: an item that is neither (a typo would trust nobody, silently).
    """
    for item in (part.strip() for part in text.split(",")):
        if item == "*":
            continue
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r} is not an IP address or network: pass addresses such as "
                                             "127.0.0.1,10.0.0.0/8, or *") from None
    return text


def add_serve_parser(sub: Any, variant_help: str, rejected_help: str) -> argparse.ArgumentParser:
    """The ``serve`` subcommand and its flags on ``sub`` (``add_subparsers()``'s object)."""
    defaults = _serve_defaults()
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
    s.add_argument("--allow-origin", action="append", metavar="URL", type=origin,
                   help="allow CORS from this origin, scheme://host[:port] (repeatable)")
    s.add_argument("--log-dir", metavar="DIR", help="write requests.csv and predictions.csv here")
    s.add_argument("--max-body", type=int, default=defaults["max_body"], metavar="BYTES", help="request body limit (default 1 MB)")
    s.add_argument("--max-batch", type=int, default=1000, metavar="ROWS", help="rows per request (default 1000)")
    s.add_argument("--max-concurrency", type=int, default=64, metavar="N",
                   help="requests in flight per worker before answering 503 (default 64)")
    s.add_argument("--drift-window", type=int, default=500, metavar="ROWS", help="recent rows tested for drift")
    s.add_argument("--log-max-bytes", type=int, default=10 * 1024 * 1024, metavar="BYTES", help="rotate logs at this size")
    s.add_argument("--max-header-bytes", type=int, default=defaults["max_header_bytes"], metavar="BYTES",
                   help="request line + headers limit, answered 431 (default 16384)")
    s.add_argument("--max-headers", type=int, default=defaults["max_headers"], metavar="N", help="header lines per request, 431 over (default 64)")
    s.add_argument("--header-timeout", type=float, default=defaults["header_timeout"], metavar="SECONDS",
                   help="time to receive a request's headers, new connections included; 408 after (default 5)")
    s.add_argument("--body-timeout", type=float, default=defaults["body_timeout"], metavar="SECONDS",
                   help="time to receive a request's body once its headers are in; 408 after (default 10)")
    s.add_argument("--keep-alive-timeout", type=float, default=defaults["keep_alive_timeout"], metavar="SECONDS",
                   help="an idle keep-alive connection is closed after this (default 5)")
    s.add_argument("--max-connections", type=int, default=defaults["max_connections"], metavar="N",
                   help="open connections per worker; over it the oldest idle one is closed, or the new one "
                        "answered 503 (default 256)")
    s.add_argument("--graceful-timeout", type=float, default=defaults["graceful_timeout"], metavar="SECONDS",
                   help="on SIGTERM, time given to requests in flight; stalled ones are answered 503 (default 30)")
    s.add_argument("--forwarded-allow-ips", metavar="IPS", type=proxy_addresses,
                   help="comma-separated proxy addresses (or *) whose X-Forwarded-For/-Proto are trusted for the "
                        "logged client address (default: none; the client is the socket's peer)")
    s.set_defaults(func=cmd_serve)
    return s
