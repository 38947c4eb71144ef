"""convert.serve_web: MIME types, no directory traversal, clear errors. Real sockets, no browser."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import urlparse

import pytest

from convert.errors import DeployKitError
from convert.serve_web import _web_dir, make_server, serve_in_thread

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """BUNDLE with web/{index.html, manifest.json, app.js, vendor/x.wasm, model/graph/model.json} and a secret."""
    web = tmp_path / "bundle" / "web"
    (web / "vendor").mkdir(parents=True)
    (web / "model" / "graph").mkdir(parents=True)
    (web / "index.html").write_text("<!doctype html><title>t</title>")
    (web / "manifest.json").write_text("{}")
    (web / "app.js").write_text("export {};")
    (web / "style.css").write_text("body{}")
    (web / "vendor" / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    (web / "model" / "graph" / "model.json").write_text("{}")
    (web / "model" / "graph" / "group1-shard1of1.bin").write_bytes(b"\0" * 8)
    (tmp_path / "bundle" / "secret.txt").write_text("secret")
    (web / "link-out").symlink_to(tmp_path / "bundle" / "secret.txt")
    return tmp_path / "bundle"


@pytest.fixture
def served(tree: Path) -> Iterator[tuple[str, int]]:
    server, url = serve_in_thread(tree / "web")
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def get(addr: tuple[str, int], raw_path: str) -> tuple[int, str, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    conn.putrequest("GET", raw_path, skip_accept_encoding=True)
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, res.getheader("Content-Type", ""), body


@pytest.mark.parametrize(
    "path, mime",
    [
        ("/", "text/html"),
        ("/index.html", "text/html"),
        ("/app.js", "text/javascript"),
        ("/style.css", "text/css"),
        ("/manifest.json", "application/json"),
        ("/vendor/x.wasm", "application/wasm"),
        ("/model/graph/model.json", "application/json"),
        ("/model/graph/group1-shard1of1.bin", "application/octet-stream"),
    ],
)
def test_mime_types(served: tuple[str, int], path: str, mime: str) -> None:
    status, ctype, _ = get(served, path)
    assert status == 200
    assert ctype.split(";")[0] == mime


@pytest.mark.parametrize(
    "raw", ["/../secret.txt", "/%2e%2e/secret.txt", "/vendor/../../secret.txt", "/..%2fsecret.txt", "/link-out", "/vendor/"]
)
def test_no_directory_traversal_or_listing(served: tuple[str, int], raw: str) -> None:
    status, _, body = get(served, raw)
    assert status == 404
    assert b"secret" not in body


def test_make_server_url_and_free_port(tree: Path) -> None:
    server, url = make_server(tree / "web")
    try:
        parsed = urlparse(url)
        assert parsed.scheme == "http" and parsed.hostname == "127.0.0.1" and url.endswith("/")
        assert parsed.port == server.server_address[1] != 0
    finally:
        server.server_close()


def test_port_in_use_is_a_clear_error(tree: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(DeployKitError, match=rf"^cannot listen on 127\.0\.0\.1:{port} \(.+\): pick another port with --port N$"):
            make_server(tree / "web", port=port)


def test_bad_bundles_are_clear_errors(tmp_path: Path, tree: Path) -> None:
    with pytest.raises(DeployKitError) as e:
        _web_dir(tmp_path / "nope")
    assert str(e.value) == f"{tmp_path / 'nope'} is not a folder: give the bundle written by `deploykit convert`"
    (tmp_path / "empty").mkdir()
    with pytest.raises(DeployKitError) as e:
        _web_dir(tmp_path / "empty")
    assert str(e.value) == f"{tmp_path / 'empty'} has no web/index.html: re-create the bundle with `deploykit convert`"
    (tree / "web" / "manifest.json").unlink()
    with pytest.raises(DeployKitError) as e:
        _web_dir(tree)
    assert str(e.value) == f"{tree / 'web'} has no manifest.json next to index.html: re-create the bundle with `deploykit convert`"


def test_web_dir_accepts_bundle_or_its_web_folder(tree: Path) -> None:
    assert _web_dir(tree) == tree / "web"
    assert _web_dir(tree / "web") == tree / "web"


def test_serve_web_prints_the_url_and_serves(tree: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = "import sys; from pathlib import Path; from convert.serve_web import serve_web; serve_web(Path(sys.argv[1]), int(sys.argv[2]), '127.0.0.1')"
    proc = subprocess.Popen([sys.executable, "-c", code, str(tree), str(port)], cwd=ROOT, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        line = proc.stdout.readline()
        assert line.strip() == f"Serving {tree / 'web'} at http://127.0.0.1:{port}/  (Ctrl+C to stop)"
        deadline = time.time() + 10
        while True:
            try:
                assert get(("127.0.0.1", port), "/vendor/x.wasm")[1] == "application/wasm"
                break
            except ConnectionRefusedError:
                assert time.time() < deadline
                time.sleep(0.05)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- JSON errors, methods, port range


@pytest.fixture
def web(tmp_path: Path) -> Iterator[tuple[str, int]]:
    root = tmp_path / "bundle" / "web"
    root.mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (root / "manifest.json").write_text("{}")
    (root / "model").mkdir()
    (root / "model" / "model.json").write_text("{}")
    (tmp_path / "bundle" / "secret.json").write_text('"secret"')
    server, _ = serve_in_thread(root)
    yield "127.0.0.1", server.server_address[1]
    server.shutdown()
    server.server_close()


def raw_request(addr: tuple[str, int], method: str, raw_path: str) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=10)
    conn.putrequest(method, raw_path, skip_accept_encoding=True)
    conn.putheader("Content-Length", "0")
    conn.endheaders()
    res = conn.getresponse()
    body = res.read()
    conn.close()
    return res.status, {k.lower(): v for k, v in res.getheaders()}, body


@pytest.mark.parametrize("raw", ["/%2e%2e/secret.json", "/model/..%2f..%2fmanifest.json", "/.%2e/manifest.json",
                                 "/%00", "/index.html%00.js", "/nope"])
def test_serve_web_errors_are_json_404(web: tuple[str, int], raw: str) -> None:
    """Encoded traversal (%2e%2e, %2f), NUL bytes and missing files are all a JSON 404: no file from outside
    the web folder, no dropped connection."""
    status, headers, body = raw_request(web, "GET", raw)
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"success": False, "error": "File not found", "status": 404}


def test_serve_web_methods(web: tuple[str, int]) -> None:
    status, headers, body = raw_request(web, "POST", "/index.html")
    assert (status, headers["allow"]) == (405, "GET, HEAD, OPTIONS")
    assert json.loads(body) == {"success": False, "status": 405,
                                "error": "method POST is not allowed; this server only serves files (use GET, HEAD, OPTIONS)"}
    status, headers, body = raw_request(web, "OPTIONS", "/index.html")
    assert (status, headers["allow"], body) == (204, "GET, HEAD, OPTIONS", b"")
    status, headers, body = raw_request(web, "HEAD", "/nope")
    assert (status, headers["content-type"], body) == (404, "application/json", b"")


@pytest.mark.parametrize("port", [65536, -1])
def test_serve_web_port_out_of_range(tmp_path: Path, port: int) -> None:
    (tmp_path / "web").mkdir()
    with pytest.raises(DeployKitError) as e:
        make_server(tmp_path / "web", port=port)
    assert str(e.value) == f"--port {port} is not a port number: pass 0-65535 (0 picks a free port)"


def test_a_client_that_leaves_mid_reply_is_no_traceback(tree: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """Each client that closed before reading its reply printed a 25-line BrokenPipeError traceback."""
    (tree / "web" / "big.bin").write_bytes(os.urandom(8 << 20))  # far over the socket buffers
    server, url = serve_in_thread(tree / "web")
    try:
        port = urlparse(url).port
        for _ in range(3):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(1024)  # the reply has started
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()  # reset: the server's next write fails
        time.sleep(0.5)
        status = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        status.request("GET", "/index.html")
        assert status.getresponse().status == 200  # still serving
        time.sleep(0.2)
    finally:
        server.shutdown()
        server.server_close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Error" not in err, err


def test_connections_over_the_limit_are_closed_not_given_threads(tree: Path) -> None:
    server, url = serve_in_thread(tree / "web")
    port = urlparse(url).port
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(server.MAX_CONNECTIONS)]
    try:
        extra = socket.create_connection(("127.0.0.1", port))
        extra.settimeout(10)
        extra.sendall(b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(1024) == b""  # closed at once
        idle.pop().close()  # a slot frees up
        time.sleep(0.3)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/index.html")
        assert conn.getresponse().status == 200
    finally:
        for s in idle:
            s.close()
        server.shutdown()
        server.server_close()


def test_an_empty_host_is_refused(tree: Path) -> None:
    """http.server listened on every interface and the printed URL said 127.0.0.1."""
    with pytest.raises(DeployKitError) as err:
        make_server(tree / "web", host="")
    assert str(err.value) == "--host is empty, which listens on every interface; pass 127.0.0.1, or 0.0.0.0 to mean every one"
