"""``Slot``: a request's place under ``--max-concurrency``, taken once its body is in. Nothing on import."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edge.server.messages import Receive, Reply

if TYPE_CHECKING:  # pragma: no cover
    from edge.telemetry import Telemetry


class Slot:
    """A ``limited`` route's ``--max-concurrency`` slot, taken once the request's body has fully arrived (a
    GET's at once): the slot is for the work on a whole request, so clients that send their bodies slowly
    (each bounded by ``--body-timeout`` and ``--max-body``) cannot keep the others out. ``receive`` is the
    request's, and takes the slot when it returns the last body message.
    """

    __slots__ = ("telemetry", "limit", "taken", "_receive")

    def __init__(self, telemetry: Telemetry, limit: int, receive: Receive) -> None:
        self.telemetry = telemetry
        self.limit = limit
        self.taken = False
        self._receive = receive

    def take(self) -> None:
        """Count the request in flight.

        Raises:
            Reply: 503 when ``limit`` requests are in flight (counted as refused busy).
        """
        if not self.telemetry.admit(self.limit):
            raise Reply(503, f"busy: {self.limit} requests in flight; retry shortly", [(b"retry-after", b"1")])
        self.taken = True

    async def receive(self) -> dict:
        """The request's next message; the slot is taken when it ends the body.

        Raises:
            Reply: 503 when the body ends and ``limit`` requests are in flight.
        """
        message = await self._receive()
        if not self.taken and message["type"] == "http.request" and not message.get("more_body", False):
            self.take()
        return message
