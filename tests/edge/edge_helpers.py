"""Helpers shared by the edge tests (importable; conftest.py holds only fixtures)."""


from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator


from tests.helpers import ENV, PYTHON, ROOT as REPO, run  # noqa: F401 - the one subprocess helper and environment


def rewrite_manifest(root: Path, change) -> None:
    """Load, change (in place) and save a bundle's manifest.json."""
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest, indent=1))


def read_reply(sock: socket.socket, timeout: float = 10, done: Any = None) -> bytes:
    """What the server sends on ``sock`` until it closes, resets or goes quiet for ``timeout`` s, or until
    ``done(reply_so_far)`` is true."""
    sock.settimeout(timeout)
    out = b""
    try:
        while done is None or not done(out):
            part = sock.recv(65536)
            if not part:
                break
            out += part
    except (ConnectionResetError, socket.timeout):
        pass
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `deploykit-edge serve` subprocess on a free loopback port."""

    def __init__(self, bundle: Path, *args: str, log_dir: Path | None = None) -> None:
        self.port = free_port()
        cmd = [PYTHON, "-m", "edge", "serve", str(bundle), "--port", str(self.port), *args]
        if log_dir is not None:
            cmd += ["--log-dir", str(log_dir)]
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited {self.proc.returncode}: {self.proc.stderr.read()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not answer /healthz in 60 s")

    def request(self, method: str, path: str, body: Any = None, headers: dict | None = None,
                timeout: float = 10) -> tuple[int, dict, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if body is not None and not isinstance(body, (bytes, str)):
                body = json.dumps(body)
                headers = {"Content-Type": "application/json", **(headers or {})}
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def json(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> tuple[int, Any]:
        status, _, data = self.request(method, path, body, headers)
        return status, json.loads(data)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, str]:
        """Send ``sig`` unless the server has exited, then :meth:`wait`."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 30) -> tuple[int, str]:
        """(exit status, stderr) once the server exits, killed after ``timeout`` s. It sends no signal: after a
        test's own SIGTERM, a second one (what :meth:`stop` would send to a server still closing) can land
        once Python's finalisation has restored the default handler, and the exit reads -15."""
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of a Prometheus text exposition (``name`` with exactly ``labels``), parsed by
    ``prometheus_client``'s parser; None when the exposition has no such sample."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


async def acall(app: Any, method: str, path: str, body: bytes = b"",
                content_type: bytes = b"application/json") -> tuple[int, bytes]:
    """One request to an ASGI app, in-process; (status, body)."""
    sent: list[dict] = []
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict:
        return pending.pop() if pending else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "client": ("127.0.0.1", 50000),
             "headers": [(b"host", b"test"), (b"content-type", content_type)]}
    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])
