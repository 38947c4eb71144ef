"""Start-up of ``deploykit-edge serve BUNDLE``: what the serve path imports for a plain bundle.

The parts no request has asked for yet (the HTML pages, the Open Inference Protocol, feedback, the OpenAPI
document, the CSV logs, the Prometheus exposition, image decoding) are imported on first use, so a server
answers its first request sooner (bench/startup_bench.py measures it). Each check runs in a fresh
interpreter, as the server starts.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from edge_helpers import ENV, REPO

# Modules a plain bundle's server must not import before a request asks for them.
LAZY = ["PIL", "prometheus_client", "edge.exposition", "edge.rollout_metrics", "edge.logs", "edge.oip",
        "edge.server.oip", "edge.server.forms", "edge.server.feedback", "edge.server.openapi",
        "tensorflow", "pandas", "convert"]

# What `deploykit-edge serve BUNDLE` does before it answers (edge.serve_cli.cmd_serve), then three
# requests in process, each printing which of LAZY are imported by then.
SERVE_PATH = textwrap.dedent('''
    import asyncio, json, sys
    lazy = json.loads(sys.argv[2])
    from edge.cli import build_parser
    build_parser()
    import uvicorn
    from edge.http_protocol import EdgeProtocol
    from edge.serve_cli import serving_app
    from edge.server import ServeConfig
    app = serving_app(ServeConfig(bundle=sys.argv[1]))
    app.startup()

    def loaded():
        return [m for m in lazy if m in sys.modules]

    async def call(method, path, body=b"", ctype=b"application/json"):
        scope = {"type": "http", "method": method, "path": path, "query_string": b"", "client": ("127.0.0.1", 1),
                 "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())]}
        sent = []

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        return sent[0]["status"]

    out = {"started": loaded(), "ready": app.ready}
    out["predict"] = [asyncio.run(call("POST", "/predict_json", b"[6, 250, 66.5]")), loaded()]
    out["form"] = [asyncio.run(call("GET", "/form")), loaded()]
    out["metrics"] = [asyncio.run(call("GET", "/metrics")), loaded()]
    out["openapi"] = [asyncio.run(call("GET", "/openapi.json")), loaded()]
    print(json.dumps(out))
''')


def _serve_path(bundle: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", SERVE_PATH, str(bundle), json.dumps(LAZY)], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_serve_path_imports_no_part_before_its_first_request(bundle: Path) -> None:
    out = _serve_path(bundle)
    assert out["started"] == [] and out["ready"] is True
    assert out["predict"] == [200, []]
    # each part comes in with its first request, and answers as before
    assert out["form"] == [200, ["edge.server.forms"]]
    assert out["metrics"] == [200, ["prometheus_client", "edge.exposition", "edge.rollout_metrics",
                                    "edge.server.forms"]]
    assert out["openapi"] == [200, ["prometheus_client", "edge.exposition", "edge.rollout_metrics", "edge.oip",
                                    "edge.server.forms", "edge.server.openapi"]]


def test_the_cli_parser_does_not_import_the_server() -> None:
    code = ("import sys; from edge.cli import build_parser; build_parser(); "
            "print([m for m in ('edge.server.app', 'numpy') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_edge_server_names_come_from_their_modules() -> None:
    import edge.server
    from edge.server.app import EdgeApp, app_from_env, build_app
    from edge.server.config import CONFIG_ENV, ServeConfig, limits

    assert (edge.server.EdgeApp, edge.server.build_app, edge.server.app_from_env) == (EdgeApp, build_app, app_from_env)
    assert (edge.server.ServeConfig, edge.server.limits, edge.server.CONFIG_ENV) == (ServeConfig, limits, CONFIG_ENV)
    assert set(edge.server.__all__) <= set(dir(edge.server))
    with pytest.raises(AttributeError, match=r"^module 'edge.server' has no attribute 'nothing'$"):
        edge.server.nothing  # noqa: B018
