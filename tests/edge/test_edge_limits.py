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


def _head(size: int, path: bytes = b"/healthz") -> bytes:
    """A GET head of exactly ``size`` bytes (its last header padded), ending in the blank line."""
    start, end = b"GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: " % path, b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def _send_in_pieces(sock: socket.socket, data: bytes, piece: int) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        for at in range(0, len(data), piece):
            sock.sendall(data[at : at + piece])
    except OSError:
        pass  # the server refused and closed before the end


def _replies(data: bytes) -> list[tuple[int, bytes]]:
    """The (status, body) of each answer in ``data``, in order (bodies framed by content-length)."""
    found = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")))
        found.append((int(head.split(b" ", 2)[1]), rest[:length]))
        data = rest[length:]
    return found


@pytest.mark.parametrize("piece", [1 << 20, 1, 7, 1000])
@pytest.mark.parametrize("size, want", [
    (4096, (200, b'{"status":"ok"}')),
    (4097, (431, b'{"success":false,"error":"request line and headers over 4096 bytes"}')),
])
def test_the_head_limit_is_exact_however_the_bytes_arrive(limited: Server, piece: int, size: int, want: tuple) -> None:
    """A head over --max-header-bytes that arrived in one read got 200 (the count was checked after the
    parser had reset it); now the head is measured, in one read or a byte at a time: at the limit passes."""
    sock = socket.create_connection(("127.0.0.1", limited.port))
    _send_in_pieces(sock, _head(size), piece)
    reply = read_reply(sock)
    assert _replies(reply) == [want]
    assert b"content-type: application/json" in reply.lower()


@pytest.mark.parametrize("head", [
    b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: " + b"b" * 20000 + b"\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: %s\r\n" % (i, b"v" * 1000) for i in range(5)) + b"\r\n",
    b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # was 400 malformed (httptools' URL limit)
    b"GET /" + b"a" * 5000 + b" HTTP/1.0\r\n\r\n",  # no header line at all
], ids=["20 KB header", "5 headers of 1 KB", "5 KB URL", "70 KB URL", "5 KB URL, no headers"])
def test_a_head_over_the_limit_in_one_write_is_431(limited: Server, head: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(head)
    assert _status_and_error(read_reply(sock)) == (431, "request line and headers over 4096 bytes")
    assert limited.json("GET", "/healthz") == (200, {"status": "ok"})


def test_a_url_httptools_cannot_parse_is_414_under_a_larger_header_limit(bundle: Path, server_factory) -> None:
    """Past 65535 bytes httptools refuses to parse a URL (that was a 400 "malformed"); only a
    --max-header-bytes over it lets one through to the check."""
    server = server_factory(bundle, "--max-header-bytes", "131072")
    answers = []
    for length in (65535, 65536):
        sock = socket.create_connection(("127.0.0.1", server.port))
        sock.sendall(b"GET /" + b"a" * (length - 1) + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers.append(_status_and_error(read_reply(sock)))
    assert answers == [(404, "no route /" + "a" * 65534 + "; see /openapi.json"),
                       (414, "URL over 65535 bytes; send long inputs in the body")]


@pytest.mark.parametrize("pipelined", [True, False])
def test_a_later_request_over_the_limit_is_431_after_the_answers_before_it(limited: Server, pipelined: bool) -> None:
    """The second request of a connection (pipelined in the same write, or sent after the first answer) is
    measured like the first; the first one's answer comes first, then the 431, then the connection closes."""
    first = b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n[6, 250, 66.5]"
    sock = socket.create_connection(("127.0.0.1", limited.port))
    if pipelined:
        sock.sendall(first + _head(4097) + _head(100))
    else:
        sock.sendall(first)
        assert _replies(read_reply(sock, done=lambda out: out.endswith(b"}")))[0][0] == 200
        sock.sendall(_head(4097))
    answers = _replies(read_reply(sock))
    over = (431, b'{"success":false,"error":"request line and headers over 4096 bytes"}')
    if pipelined:
        assert [status for status, _ in answers] == [200, 431], answers
        assert b'"success":true' in answers[0][1] and answers[1] == over
    else:
        assert answers == [over]


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


@pytest.mark.parametrize("path, stalled", [
    ("/predict_json", b"[6, 25"),
    ("/v1/models/boston_mlp:predict", b'{"instances": [[6, 25'),
])
def test_stalled_bodies_hold_no_concurrency_slot_and_get_408(limited: Server, path: str, stalled: bytes) -> None:
    """64 clients sending their bodies a byte a second held every --max-concurrency slot: every prediction
    got 503 until --body-timeout. A slot is now taken once the body is in; the stalled ones still get 408."""
    held = []
    for _ in range(2 + 2):  # more than --max-concurrency 2
        sock = socket.create_connection(("127.0.0.1", limited.port))
        sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 100\r\n\r\n%s" % (path.encode(), stalled))
        held.append(sock)
    time.sleep(0.3)
    for sock in held:
        sock.sendall(b"6")  # still sending
    assert limited.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200  # the one-row path
    status, answer = limited.json("POST", "/predict_json", [[6, 250, 66.5], [5, 200, 60.0]])  # the general path
    assert status == 200 and len(answer["predictions"]) == 2, answer
    status, answer = limited.json("POST", "/v1/models/boston_mlp:predict", {"instances": [[6, 250, 66.5]]})
    assert status == 200 and len(answer["predictions"]) == 1, answer
    for sock in held:
        assert _status_and_error(read_reply(sock)) == (408, "request body not received within 1 s")
    assert limited.json("POST", "/predict_json", [6, 250, 66.5])[0] == 200


class _Counter:
    """What ``Slot`` uses of ``Telemetry``."""

    def __init__(self, inflight: int) -> None:
        self.inflight = inflight

    def admit(self, limit: int) -> bool:
        if self.inflight >= limit:
            return False
        self.inflight += 1
        return True


def _messages(*messages: dict):
    pending = list(messages)

    async def receive() -> dict:
        return pending.pop(0)
    return receive


def test_a_slot_is_taken_when_the_body_ends_and_refused_503_when_all_are_taken() -> None:
    import asyncio

    from edge.server.slot import Slot
    from edge.server.messages import Reply

    part = {"type": "http.request", "body": b"[6", "more_body": True}
    last = {"type": "http.request", "body": b"]", "more_body": False}
    counter = _Counter(inflight=1)
    slot = Slot(counter, 2, _messages(part, last))  # type: ignore[arg-type]
    assert asyncio.run(slot.receive()) == part and not slot.taken and counter.inflight == 1
    assert asyncio.run(slot.receive()) == last and slot.taken and counter.inflight == 2
    full = Slot(counter, 2, _messages(part, last))  # type: ignore[arg-type]
    asyncio.run(full.receive())
    with pytest.raises(Reply) as refused:
        asyncio.run(full.receive())
    assert (refused.value.status, str(refused.value), refused.value.headers) == (
        503, "busy: 2 requests in flight; retry shortly", [(b"retry-after", b"1")])
    assert not full.taken and counter.inflight == 2
    gone = Slot(counter, 2, _messages({"type": "http.disconnect"}))  # type: ignore[arg-type]
    assert asyncio.run(gone.receive()) == {"type": "http.disconnect"} and not gone.taken


def test_idle_keep_alive_connection_is_closed(limited: Server) -> None:
    sock = socket.create_connection(("127.0.0.1", limited.port))
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    start = time.monotonic()
    reply = read_reply(sock)
    assert reply.startswith(b"HTTP/1.1 200 ") and reply.endswith(b'{"status":"ok"}')  # then closed, no 408
    assert 0.5 < time.monotonic() - start < 4


@pytest.mark.parametrize("expect, length, want", [
    (b"100-continue", 1024 ** 3, (413, "body of 1073741824 bytes is over the limit of 1048576 bytes")),
    (b"100-continue", 10 ** 18, (413, "body of 1000000000000000000 bytes is over the limit of 1048576 bytes")),
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


def test_a_request_whose_body_is_in_holds_its_slot_until_answered(bundle: Path) -> None:
    """In process: a prediction whose body arrived and whose answer is not yet sent holds the one slot of
    --max-concurrency 1; another prediction gets 503, a slow body does not count, and /healthz answers."""
    import asyncio

    from edge.server import ServeConfig, build_app

    app = build_app(ServeConfig(bundle=str(bundle), max_concurrency=1))
    app.startup()
    body = b"[[6, 250, 66.5], [5, 200, 60.0]]"  # a batch: the general path

    def scope(path: str, method: str = "POST") -> dict:
        return {"type": "http", "method": method, "path": path, "query_string": b"", "client": ("127.0.0.1", 1),
                "headers": [(b"host", b"x"), (b"content-type", b"application/json")]}

    async def main() -> list:
        release = asyncio.Event()
        slow_more = asyncio.Event()
        held_sent: list[dict] = []

        async def whole() -> dict:
            return {"type": "http.request", "body": body, "more_body": False}

        async def held_send(message: dict) -> None:
            held_sent.append(message)
            await release.wait()  # the client does not read its answer yet

        slow_parts = [{"type": "http.request", "body": b"[6, 25", "more_body": True}]

        async def slow() -> dict:
            if slow_parts:
                return slow_parts.pop()
            await slow_more.wait()
            return {"type": "http.request", "body": b"0, 66.5]", "more_body": False}

        async def call(path: str, receive, method: str = "POST") -> tuple[int, bytes]:
            sent: list[dict] = []

            async def send(message: dict) -> None:
                sent.append(message)
            await app(scope(path, method), receive, send)
            return sent[0]["status"], sent[1]["body"]

        slow_task = asyncio.ensure_future(call("/predict_json", slow))  # waiting for its body: no slot
        await asyncio.sleep(0.05)
        held = asyncio.ensure_future(app(scope("/predict_json"), whole, held_send))
        await asyncio.sleep(0.05)  # its answer is being sent: its slot is taken
        results = [await call("/predict_json", whole), await call("/healthz", whole, "GET"),
                   await call("/drift", whole, "GET")]
        release.set()
        await held
        slow_more.set()
        results += [held_sent[0]["status"], await slow_task, await call("/predict_json", whole)]
        return results

    busy = (503, b'{"success":false,"error":"busy: 1 requests in flight; retry shortly"}')
    got = asyncio.run(main())
    assert got[:3] == [busy, (200, b'{"status":"ok"}'), busy]
    assert got[3] == 200 and got[4][0] == 200 and got[5][0] == 200
    app.shutdown()
