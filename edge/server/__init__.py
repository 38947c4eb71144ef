"""The ``deploykit-edge serve`` ASGI application: a plain ASGI callable, no framework.

Modules, each holding one thing: ``config`` (``ServeConfig``), ``routing`` (the ``Route`` table's
matcher), ``messages`` (what the parts share: request, answer, errors, body reading), ``app`` (the core:
``EdgeApp``, its route table, ``build_app``, ``app_from_env``; ``lifecycle`` and ``predictions`` are its
start-up/scans/shutdown and its prediction methods), ``shadow_worker`` (the shadow's worker process),
``fastpath`` (the one-row path, outermost), ``cors`` (a middleware), ``tfserving`` (TF Serving's REST
API), ``forms`` (the HTML pages), ``openapi``, ``later`` (the handlers of the parts imported on their first
request: the pages, OIP, feedback, OpenAPI).
What the server counts lives in ``edge.telemetry``.

Routes: ``POST /predict_json``, ``GET /form``, ``POST /predict_form``, TF Serving's
``POST /v1/models/{name}:predict``, ``GET /v1/models/{name}``, ``GET /v1/models/{name}/metadata``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /drift``, ``GET /openapi.json``, ``GET /``.
Every error is JSON ``{"success": false, "error": "..."}`` (the form route answers HTML). No input raises
out of the app: unexpected exceptions become a 500 answer.

The names below are imported on first use (PEP 562), so that ``from edge.server import ServeConfig`` (the
CLI's parser reads its defaults) does not import the app and what it brings (numpy, the runtimes'
modules). The OpenAPI document's function is ``edge.server.openapi.openapi`` (``edge.server.openapi`` is
its module).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"EdgeApp": "edge.server.app", "app_from_env": "edge.server.app", "build_app": "edge.server.app",
          "CONFIG_ENV": "edge.server.config", "ServeConfig": "edge.server.config", "limits": "edge.server.config"}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    """``edge.server.NAME``, imported from its module on first use.

    Raises:
        AttributeError: ``name`` is none of ``__all__``.
    """
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module 'edge.server' has no attribute {name!r}")
    value = getattr(importlib.import_module(where), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
