"""The ``deploykit-edge serve`` ASGI application: a plain ASGI callable, no framework.

Modules, each holding one thing: ``config`` (``ServeConfig``), ``routing`` (the ``Route`` table's
matcher), ``messages`` (what the parts share: request, answer, errors, body reading), ``app`` (the core:
``EdgeApp``, its route table, ``build_app``, ``app_from_env``; ``lifecycle`` and ``predictions`` are its
start-up/scans/shutdown and its prediction methods), ``shadow_worker`` (the shadow's worker process),
``fastpath`` (the one-row path, outermost), ``cors`` (a middleware), ``tfserving`` (TF Serving's REST
API), ``forms`` (the HTML pages), ``openapi``.
What the server counts lives in ``edge.telemetry``.

Routes: ``POST /predict_json``, ``GET /form``, ``POST /predict_form``, TF Serving's
``POST /v1/models/{name}:predict``, ``GET /v1/models/{name}``, ``GET /v1/models/{name}/metadata``,
``GET /healthz``, ``GET /readyz``, ``GET /metrics``, ``GET /drift``, ``GET /openapi.json``, ``GET /``.
Every error is JSON ``{"success": false, "error": "..."}`` (the form route answers HTML). No input raises
out of the app: unexpected exceptions become a 500 answer.
"""

from edge.server.app import EdgeApp, app_from_env, build_app
from edge.server.config import CONFIG_ENV, ServeConfig, limits
from edge.server.openapi import openapi

__all__ = ["CONFIG_ENV", "EdgeApp", "ServeConfig", "app_from_env", "build_app", "limits", "openapi"]
