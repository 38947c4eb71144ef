"""Serve a bundle's static page (``BUNDLE/web``) on localhost: ``deploykit serve-web BUNDLE [--port N]``.

A small threaded ``http.server`` with the MIME types the page needs (``application/wasm`` for the TFJS
wasm backend, ``text/javascript`` for ES modules), no directory listings, and no way out of the web folder
(``..`` is refused and symlinks that leave it are answered 404).
"""

from __future__ import annotations

import http.server
import json
import os
import sys
import threading
import urllib.parse
from functools import partial
from pathlib import Path
from typing import Any

from convert.errors import DeployKitError

MIME_TYPES = {
    ".wasm": "application/wasm",
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".html": "text/html",
    ".css": "text/css",
    ".bin": "application/octet-stream",
    ".txt": "text/plain",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    "": "application/octet-stream",
}


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files from one folder; 404 for directories without index.html and for escapes.

    Errors are JSON (``{"success": false, "error": ..., "status": N}``), like the edge server's; methods
    other than GET and HEAD are answered 405 with ``Allow`` (OPTIONS: 204 with ``Allow``); a client that
    sends nothing for ``timeout`` seconds is disconnected, so idle connections do not pin threads.
    """

    extensions_map = MIME_TYPES
    root: Path  # set by make_server through a subclass
    timeout = 30
    ALLOW = "GET, HEAD, OPTIONS"

    def end_headers(self) -> None:  # noqa: D401 - http.server hook
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's error reply, as JSON instead of an HTML page."""
        short = self.responses.get(code, ("Error", ""))[0]
        text = message or short
        self.log_error("code %d, message %s", code, text)
        self.send_response(code, short)  # the standard reason phrase, never text from the request
        self.send_header("Connection", "close")
        body = b""
        if code >= 200 and code not in (204, 205, 304):
            body = json.dumps({"success": False, "error": text, "status": code}).encode("utf-8")
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
        if code == 405:
            self.send_header("Allow", self.ALLOW)
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _not_allowed(self) -> None:
        self.send_error(405, f"method {self.command} is not allowed; this server only serves files (use {self.ALLOW})")

    do_POST = do_PUT = do_DELETE = do_PATCH = do_TRACE = do_CONNECT = _not_allowed

    def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(204)
        self.send_header("Allow", self.ALLOW)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_head(self) -> Any:
        path = self.translate_path(self.path)
        decoded = urllib.parse.unquote(self.path.split("?", 1)[0].split("#", 1)[0])
        if ".." in decoded.replace("\\", "/").split("/") or "\0" in decoded:
            self.send_error(404, "File not found")
            return None
        try:
            real = Path(path).resolve()
        except (OSError, ValueError):
            self.send_error(404, "File not found")
            return None
        if real != self.root and self.root not in real.parents:
            self.send_error(404, "File not found")
            return None
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "index.html")):
            # Let the base class redirect "/dir" to "/dir/"; never list a directory.
            if self.path.split("?", 1)[0].endswith("/"):
                self.send_error(404, "File not found")
                return None
        return super().send_head()

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "File not found")
        return None

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        return  # quiet: the page makes a request per file


def _web_dir(bundle: Path) -> Path:
    """The folder to serve: ``bundle/web``, or ``bundle`` itself when it is already the web folder.

    Raises:
        DeployKitError: the folder is missing or holds no page.
    """
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise DeployKitError(f"{bundle} is not a folder: give the bundle written by `deploykit convert`")
    for candidate in (bundle / "web", bundle):
        if (candidate / "index.html").is_file():
            if not (candidate / "manifest.json").is_file():
                raise DeployKitError(
                    f"{candidate} has no manifest.json next to index.html: re-create the bundle with `deploykit convert`"
                )
            return candidate
    raise DeployKitError(f"{bundle} has no web/index.html: re-create the bundle with `deploykit convert`")


class _Server(http.server.ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that takes at most ``MAX_CONNECTIONS`` connections at once (one more is
    closed at once rather than given a thread) and says nothing when a client goes away mid-reply (a
    closed tab, a cancelled fetch: ``BrokenPipeError`` and its kin); any other handler error is one line
    on stderr, not a traceback."""

    daemon_threads = True
    MAX_CONNECTIONS = 64

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._slots = threading.BoundedSemaphore(self.MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        print(f"serve-web: error answering {client_address[0]}: {type(exc).__name__}: {exc}", file=sys.stderr)


def make_server(web_dir: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Create (not start) a static server for ``web_dir``; port 0 picks a free port.

    Returns the server and its base URL (ending in ``/``). Call ``server.serve_forever()`` (for example in
    a thread) and ``server.shutdown(); server.server_close()`` when done.

    Raises:
        DeployKitError: an empty host, ``web_dir`` is not a folder, or the address cannot be bound (port in use).
    """
    if not host.strip():  # http.server would listen on every interface and say 127.0.0.1
        raise DeployKitError("--host is empty, which listens on every interface; pass 127.0.0.1, or 0.0.0.0 to mean every one")
    root = Path(web_dir).resolve()
    if not root.is_dir():
        raise DeployKitError(f"{web_dir} is not a folder: give the bundle's web folder")
    handler = type("WebHandler", (_Handler,), {"root": root})
    try:
        server = _Server((host, port), partial(handler, directory=str(root)))
    except OSError as exc:
        raise DeployKitError(f"cannot listen on {host}:{port} ({exc.strerror}): pick another port with --port N") from None
    except OverflowError:
        raise DeployKitError(f"--port {port} is not a port number: pass 0-65535 (0 picks a free port)") from None
    bound_port = server.server_address[1]
    shown = "127.0.0.1" if host in ("", "0.0.0.0") else (f"[{host}]" if ":" in host else host)
    return server, f"http://{shown}:{bound_port}/"


def serve_web(bundle: Path, port: int = 8000, host: str = "127.0.0.1") -> None:
    """Serve ``bundle/web`` until Ctrl+C; prints the URL first.

    Raises:
        DeployKitError: not a bundle with a page, or the port cannot be bound.
    """
    web = _web_dir(Path(bundle))
    server, url = make_server(web, host, port)
    print(f"Serving {web} at {url}  (Ctrl+C to stop)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("Stopped.", file=sys.stderr)
    finally:
        server.server_close()


def serve_in_thread(web_dir: Path, host: str = "127.0.0.1", port: int = 0) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Start a server for ``web_dir`` in a daemon thread (tests, benchmarks, ``deploykit demo``).

    Raises:
        DeployKitError: as ``make_server``.
    """
    server, url = make_server(web_dir, host, port)
    threading.Thread(target=server.serve_forever, name="serve-web", daemon=True).start()
    return server, url
