"""HTTP limits of `deploykit-edge serve` (edge.http_protocol): raw sockets against a real server on loopback."""

from __future__ import annotations

import json
import select
import signal
import socket
import time
from pathlib import Path

import pytest

from edge_helpers import Server, read_reply


def _status_and_error(reply: bytes) -> tuple[int, str]:
    head, _, body = reply.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), reply[:300]
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]


def _count_closed(socks: list[socket.socket], want: int, within: float) -> int:
    """How many of ``socks`` the server closed (EOF or reset), waiting until ``want`` are or ``within`` seconds
    passed; the ones left open are not waited for one by one."""
    pending, closed = list(socks), 0
    deadline = time.monotonic() + within
    while pending and closed < want and (left := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select(pending, [], [], left)
        for sock in readable:
            pending.remove(sock)
            try:
                closed += sock.recv(10) == b""
            except ConnectionResetError:
                closed += 1
    return closed


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def limited(bundle: Path):
    server = Server(bundle, "--header-timeout", "1", "--body-timeout", "1", "--keep-alive-timeout", "1",
                    "--max-headers", "20", "--max-header-bytes", "4096", "--max-concurrency", "2")
    yield server
    server.stop()


def test_a_huge_header_is_refused_431_without_buffering_it(limited: Server) -> None:
    """A 64 MiB header took the server from 68 to 418 MiB; now it is refused after --max-header-bytes."""
    before = _rss_kib(limited.proc.pid)
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        for _ in range(64 * 16):  # up to 64 MiB, 64 KiB at a time
            sock.sendall(b"a" * 65536)
            sent += 65536
    except OSError:
        pass  # the server closed: expected
    assert sent < 8 * 1024 * 1024, sent  # it stopped reading long before the end
    status, error = _status_and_error(read_reply(sock))
    assert (status, error) == (431, "request line and headers over 4096 bytes")
    assert _rss_kib(limited.proc.pid) - before < 16 * 1024
    assert limited.json("GET", "/healthz")[0] == 200


def test_too_many_header_lines_431(limited: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(30)) + b"\r\n")
    assert _status_and_error(read_reply(sock)) == (431, "more than 20 header lines")


def test_silent_and_slow_header_connections_get_408(limited: Server) -> None:
    """No timeout before the first request: idle connections stayed open forever."""
    silent = socket.create_connection(("127.0.0.1", limited.port))
    slow = socket.create_connection(("127.0.0.1", limited.port))
    start = time.monotonic()
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    for _ in range(3):
        time.sleep(0.4)
        try:
            slow.sendall(b"X-Slow: 1\r\n")
        except OSError:
            break
    for sock in (silent, slow):
        assert _status_and_error(read_reply(sock)) == (408, "request headers not received within 1 s")
    assert time.monotonic() - start < 4


def test_a_stalled_body_gets_408_and_frees_its_slot(limited: Server) -> None:
    """Clients that sent half a body held the concurrency slots (503 for everyone else) for as long as they
    waited; now they get 408 after --body-timeout and the slots are free again."""
    held = []
    for _ in range(2):
        sock = socket.create_connection(("127.0.0.1", limited.port))
        sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 14\r\n\r\n[6, 25")
        held.append(sock)
    time.sleep(0.3)
    assert limited.json("POST", "/predict_json", [6, 250, 66.5])[0] == 503  # both slots taken
    for sock in held:
        assert _status_and_error(read_reply(sock)) == (408, "request body not received within 1 s")
    assert limited.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200


def test_idle_keep_alive_connection_is_closed(limited: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    start = time.monotonic()
    reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"status":"ok"}')  # then closed, no 408
    assert 0.5 < time.monotonic() - start < 4


@pytest.mark.parametrize("expect, length, want", [
    (b"100-continue", 1024 ** 3, (413, "body of 1073741824 bytes is over the limit of 1048576 bytes")),
    (b"something-else", 10, (417, "Expect: something-else is not supported; send no Expect header or Expect: 100-continue")),
])
def test_expect_is_answered_from_the_headers(limited: Server, expect: bytes, length: int, want: tuple) -> None:
    """`Expect: 100-continue` on /predict_json invited a 1 GB upload (the short path read the body first)."""
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nExpect: %s\r\n\r\n" % (length, expect))
    reply = read_reply(sock)
    assert b"100 Continue" not in reply
    assert _status_and_error(reply) == want


def test_a_small_expect_100_continue_still_works(limited: Server) -> None:
    body = b"[6, 250, 66.5]"
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n" % len(body))
    sock.settimeout(5)
    assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue")
    sock.sendall(body)
    assert b'"success":true' in read_reply(sock)


def test_idle_connections_cannot_keep_healthz_out(bundle: Path, server_factory) -> None:
    """500 idle connections stayed open forever and /healthz was reset while they were; over
    --max-connections the oldest idle one is closed, and a new connection with nobody idle gets 503."""
    server = server_factory(bundle, "--max-connections", "20", "--header-timeout", "30", "--max-concurrency", "100")
    idle = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(60)]
    time.sleep(0.3)
    assert server.json("GET", "/healthz") == (200, {"status": "ok"})
    closed = _count_closed(idle, want=60 - 20, within=5.0)
    for sock in idle:
        sock.close()
    assert closed >= 60 - 20, closed
    busy = []
    for _ in range(20):  # 20 requests in progress (bodies not finished): nobody is idle
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 14\r\n\r\n[6, 25")
        busy.append(sock)
    time.sleep(0.3)
    late = socket.create_connection(("127.0.0.1", server.port))
    assert _status_and_error(read_reply(late)) == (503, "too many open connections (20); retry shortly")
    for sock in busy:
        sock.close()


def test_sigterm_answers_stalled_clients_503_and_exits_in_time(bundle: Path, server_factory) -> None:
    """A stalled client during SIGTERM got a text/plain 500 once the graceful timeout ended, and the log a
    traceback; now it gets a 503 JSON before the end of --graceful-timeout, and the exit is clean."""
    server = server_factory(bundle, "--graceful-timeout", "3", "--body-timeout", "60")
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 14\r\n\r\n[6, 25")
    time.sleep(0.3)
    start = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    reply = read_reply(sock)
    assert _status_and_error(reply) == (503, "the server is shutting down; retry shortly")
    code, err = server.wait()
    assert code == 0 and time.monotonic() - start < 3.5, err
    assert "Traceback" not in err and "Exception in ASGI" not in err, err


def test_the_systemd_unit_sets_the_limits_it_relies_on() -> None:
    import shlex

    from edge.cli import build_parser
    from edge_helpers import REPO

    text = (REPO / "edge" / "deploykit-edge.service").read_text().replace("\\\n", " ")
    line = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    argv = shlex.split(line[len("ExecStart="):])
    flags = {a for a in argv if a.startswith("--")}
    for flag in ("--max-body", "--max-batch", "--max-concurrency", "--max-header-bytes", "--max-headers",
                 "--header-timeout", "--body-timeout", "--keep-alive-timeout", "--max-connections", "--graceful-timeout"):
        assert flag in flags, flag
    args = build_parser().parse_args(argv[1:])
    stop = int(next(x for x in text.splitlines() if x.startswith("TimeoutStopSec=")).split("=")[1])
    assert stop > args.graceful_timeout
