"""The HTTP limits of ``deploykit-edge serve`` and their defaults, in one place (no dependencies).

``edge.http_protocol`` enforces them; ``edge.server.config.ServeConfig`` and the CLI flags take their defaults from here.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    """The HTTP limits of ``deploykit-edge serve`` (the flag of each is named in ``edge.cli``)."""

    max_header_bytes: int = 16 * 1024
    max_headers: int = 64
    header_timeout: float = 5.0
    body_timeout: float = 10.0
    keep_alive_timeout: float = 5.0
    max_connections: int = 256
    max_body: int = 1024 * 1024
    graceful_timeout: float = 30.0


DEFAULTS = Limits()
