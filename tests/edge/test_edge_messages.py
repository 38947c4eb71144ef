"""edge.server.messages.read_body: bodies that arrive in parts count against one budget for the process."""

from __future__ import annotations

import asyncio

import pytest

from edge.server import messages
from edge.server.messages import BodyBudget, Reply, Request, read_body


def _request(parts: list[bytes], last: bool) -> Request:
    queue = [{"type": "http.request", "body": p, "more_body": True} for p in parts]
    if last:
        queue[-1]["more_body"] = False
    pending = list(reversed(queue))

    async def receive() -> dict:
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)  # a client that stopped sending
        return {"type": "http.disconnect"}

    return Request({"type": "http"}, receive, {b"content-type": b"application/json"})


def test_bodies_in_parts_share_one_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """250 clients each sending 1 MiB less a byte held 250 MiB (no concurrency slot is held while a body comes)."""
    budget = BodyBudget(3000)
    monkeypatch.setattr(messages, "BODIES", budget)

    async def run() -> None:
        held = [asyncio.ensure_future(read_body(_request([b"x" * 1000], last=False), (b"application/json",), 10_000))
                for _ in range(3)]
        await asyncio.sleep(0.01)
        assert budget.held == 3000
        with pytest.raises(Reply) as err:  # a fourth, over the budget
            await read_body(_request([b"y" * 600, b"y" * 600], last=True), (b"application/json",), 10_000)
        assert (err.value.status, str(err.value)) == (503, "busy: 3,000 bytes of request bodies are being received; retry shortly")
        held[0].cancel()  # one client goes: its bytes are given back
        await asyncio.gather(held[0], return_exceptions=True)
        assert budget.held == 2000
        body = await read_body(_request([b"z" * 500, b"z" * 500], last=True), (b"application/json",), 10_000)
        assert body == b"z" * 1000 and budget.held == 2000
        for task in held[1:]:
            task.cancel()
        await asyncio.gather(*held[1:], return_exceptions=True)
        assert budget.held == 0

    asyncio.run(run())
