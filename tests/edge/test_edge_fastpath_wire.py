"""The one-row fast path's answer on the wire (``edge.server.fastpath`` + ``edge.http_protocol.answer_whole``):
one write of the bytes uvicorn's two ASGI sends would write, keep-alive kept, and the ASGI sends whenever the
connection is to close. Raw sockets against a real ``deploykit-edge serve`` on loopback."""

from __future__ import annotations

import re
import socket

from edge_helpers import Server

REQUEST = (b"POST /predict_json HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 14\r\n"
           b"%s\r\n[6, 250, 66.5]")
ANSWER = re.compile(rb"HTTP/1\.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: (\d+)\r\n"
                    rb"x-model-version: 1\r\nx-prediction-id: ([0-9a-f]+)\r\n(connection: close\r\n)?\r\n"
                    rb'(\{"prediction":[-0-9.e]+,"success":true,"model_version":1,"id":"([0-9a-f]+)"\})')


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def test_fast_answers_are_uvicorn_s_bytes_and_keep_the_connection(module_server: Server) -> None:
    """Three requests on one connection: each answer is exactly the status line, the four headers (lower
    case, in order) and the body, its content-length right and its id in the header and the body alike;
    then the fast path's requests are counted."""
    with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as sock:
        ids = []
        for _ in range(3):
            sock.sendall(REQUEST % b"")
            answer = _read_answer(sock)
            match = ANSWER.fullmatch(answer)
            assert match is not None, answer
            assert int(match.group(1)) == len(match.group(4)) and match.group(3) is None
            assert match.group(2) == match.group(5)
            ids.append(match.group(2))
        assert len(set(ids)) == 3


def test_a_connection_to_close_gets_the_asgi_answer_and_closes(module_server: Server) -> None:
    """``Connection: close`` (and HTTP/1.0): ``answer_whole`` declines, the ASGI sends answer with
    ``connection: close`` and the server closes the connection."""
    for request in (REQUEST % b"Connection: close\r\n", (REQUEST % b"").replace(b"HTTP/1.1", b"HTTP/1.0", 1)):
        with socket.create_connection(("127.0.0.1", module_server.port), timeout=10) as sock:
            sock.sendall(request)
            answer = _read_answer(sock)
            match = ANSWER.fullmatch(answer)
            assert match is not None and match.group(3) == b"connection: close\r\n", answer
            assert sock.recv(1) == b""  # closed by the server


def test_answer_whole_declines_what_it_cannot_finish() -> None:
    """``answer_whole`` writes nothing and says False for another request's cycle (or none), a response already started, a client gone, paused
    writing, a connection to close, default headers or an access log; else one write and the cycle done."""
    from types import SimpleNamespace

    from edge.http_protocol import _WHOLE, answer_whole

    assert _WHOLE  # the installed uvicorn's httptools cycle has the state answer_whole sets

    scope: dict = {}

    def cycle(**change: object) -> SimpleNamespace:
        writes: list[bytes] = []
        done: list[bool] = []
        c = SimpleNamespace(response_started=False, disconnected=False, keep_alive=True,
                            flow=SimpleNamespace(write_paused=False), default_headers=[], access_log=False,
                            transport=SimpleNamespace(write=writes.append), writes=writes, done=done,
                            message_event=SimpleNamespace(set=lambda: done.append(True)),
                            on_response=lambda: done.append(True), waiting_for_100_continue=True,
                            chunked_encoding=None, expected_content_length=0, response_complete=False, scope=scope)
        for key, value in change.items():
            setattr(c, key, value)
        return c

    for change in ({"scope": {}}, {"response_started": True}, {"disconnected": True}, {"keep_alive": False},
                   {"flow": SimpleNamespace(write_paused=True)}, {"default_headers": [(b"server", b"x")]},
                   {"access_log": True}):
        c = cycle(**change)
        assert answer_whole(SimpleNamespace(cycle=c), scope, b"HEAD\r\n\r\n", b"body") is False
        assert c.writes == [] and c.done == [] and not c.response_complete and c.waiting_for_100_continue
    assert answer_whole(SimpleNamespace(cycle=None), scope, b"HEAD\r\n\r\n", b"body") is False
    c = cycle()
    assert answer_whole(SimpleNamespace(cycle=c), scope, b"HEAD\r\n\r\n", b"body") is True
    assert c.writes == [b"HEAD\r\n\r\nbody"] and c.response_started and c.response_complete and c.done == [True, True]


def test_one_write_is_off_for_a_uvicorn_whose_cycle_lacks_the_state(monkeypatch) -> None:
    """``_whole_possible`` reads the names uvicorn's ``RequestResponseCycle.__init__`` assigns: one missing
    (a renamed attribute in another release) turns the one-write answer off."""
    import edge.http_protocol as hp

    assert hp._whole_possible()
    monkeypatch.setattr(hp, "_CYCLE_ATTRIBUTES", (*hp._CYCLE_ATTRIBUTES, "renamed_state"))
    assert not hp._whole_possible()
