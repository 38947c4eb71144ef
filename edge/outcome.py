"""What a dispatch gives back (``edge.dispatch.Dispatcher``): the ``Outcome`` of a request, the
``DispatchError`` when no version could answer, and the ``DispatchStats`` counters ``/metrics`` reads.
The server reads these; it never needs the dispatcher's internals."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from edge.errors import EdgeError
from edge.shadow import ShadowJob


class DispatchError(EdgeError):
    """A request no version could answer; ``status`` is the HTTP status (422, 500 or 503)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Outcome:
    """What answered a request: the version, the outputs (a float on the one-value path), the ids (one
    per row), whether it was the canary, whether the fallback answered and why, and the shadow job (the
    server's shadow worker runs it once the answer is sent) or None."""

    __slots__ = ("version", "outputs", "ids", "canary", "fallback", "reason", "shadow")

    def __init__(self, version: int, outputs: Any, ids: list[str], canary: bool = False, fallback: bool = False,
                 reason: str = "", shadow: Optional[ShadowJob] = None) -> None:
        self.version, self.outputs, self.ids, self.canary = version, outputs, ids, canary
        self.fallback, self.reason, self.shadow = fallback, reason, shadow


@dataclass
class DispatchStats:
    """Counters for ``/metrics``: answers per version, fallbacks, failed checks, rollbacks."""

    answers: dict[int, int] = field(default_factory=dict)
    fallbacks: int = 0
    check_failures: dict[int, int] = field(default_factory=dict)
    errors: dict[int, int] = field(default_factory=dict)
    rollbacks: int = 0
    rollback_events: list[Any] = field(default_factory=list)
