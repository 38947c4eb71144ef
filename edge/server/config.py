"""``ServeConfig``: everything ``serve`` needs, and the ``edge.limits.Limits`` it implies.

The HTTP limits' defaults are written once, in ``edge.limits``; the CLI flags take theirs from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional

from edge.limits import DEFAULTS as LIMIT_DEFAULTS, Limits

CONFIG_ENV = "DEPLOYKIT_EDGE_SERVE_CONFIG"


@dataclass
class ServeConfig:
    """Everything ``serve`` needs; also passed to worker processes as JSON in ``CONFIG_ENV``."""

    bundle: str  # one bundle folder, or MODELS/ (MODELS/NAME/VERSION/ each a bundle; edge.repository)
    variant: Optional[str] = None
    rollout_config: Optional[str] = None  # default MODELS/rollout.json (edge.rollout_config)
    model: Optional[str] = None  # the model /predict_json and the form answer with (default: the only one)
    host: str = "127.0.0.1"
    port: int = 8000
    workers: int = 1
    allow_origins: list[str] = field(default_factory=list)
    log_dir: Optional[str] = None
    max_body: int = LIMIT_DEFAULTS.max_body
    max_batch: int = 1000
    max_concurrency: int = 64
    drift_window: int = 500
    log_max_bytes: int = 10 * 1024 * 1024
    log_backups: int = 5
    allow_rejected: bool = False
    serve_unready: bool = False
    forwarded_allow_ips: Optional[str] = None
    shared_dir: Optional[str] = None  # --workers N: where workers share metrics and drift (edge.workers)
    # HTTP limits, enforced by edge.http_protocol; defaults in edge.limits
    max_header_bytes: int = LIMIT_DEFAULTS.max_header_bytes
    max_headers: int = LIMIT_DEFAULTS.max_headers
    header_timeout: float = LIMIT_DEFAULTS.header_timeout
    body_timeout: float = LIMIT_DEFAULTS.body_timeout
    keep_alive_timeout: float = LIMIT_DEFAULTS.keep_alive_timeout
    max_connections: int = LIMIT_DEFAULTS.max_connections
    graceful_timeout: float = LIMIT_DEFAULTS.graceful_timeout
    # inference: the interpreter's threads (None: measured per model, the "auto" rule of edge.threads), and the
    # prediction time (measured at start-up, then the recent calls' median) above which predictions run on the
    # inference thread instead of the event loop (edge.server.lifecycle, edge.server.inference)
    threads: Optional[int] = None
    offload_after: float = 0.002
    # with the inference thread: a lone call that typically costs under this (CPU seconds) still runs on the
    # event loop, no hand-off (half of /healthz's 5 ms goal: a health check waits for at most one such call)
    inline_under: float = 0.0025

    def to_json(self) -> str:
        return json.dumps(self.__dict__)

    @classmethod
    def from_json(cls, text: str) -> "ServeConfig":
        return cls(**json.loads(text))


def limits(config: ServeConfig) -> Limits:
    """The ``edge.limits.Limits`` of a config."""
    return Limits(max_header_bytes=config.max_header_bytes, max_headers=config.max_headers,
                  header_timeout=config.header_timeout, body_timeout=config.body_timeout,
                  keep_alive_timeout=config.keep_alive_timeout, max_connections=config.max_connections,
                  max_body=config.max_body, graceful_timeout=config.graceful_timeout)
