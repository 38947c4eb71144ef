"""The shadow's worker process seen from outside a real server (loopback HTTP, the Boston bundles): a server
without a shadow starts no process; one with a shadow starts one at the first copy, as its child, and a
server killed outright (SIGKILL, no shutdown) leaves no orphan behind."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path


from edge_helpers import Server, metric
from test_edge_rollout_http import Client


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def repository(root: Path, bundle: Path, linear: Path, model: dict) -> Path:
    shutil.copytree(linear, root / "boston" / "1")
    shutil.copytree(bundle, root / "boston" / "2")
    (root / "rollout.json").write_text(json.dumps({"schema_version": 1, "poll_seconds": 60, "models": {"boston": model}}))
    return root


def test_a_server_without_a_shadow_starts_no_process(server_factory, bundle: Path, boston_linear_bundle: Path,
                                                     tmp_path: Path) -> None:
    for server in (server_factory(bundle),
                   server_factory(repository(tmp_path / "m", bundle, boston_linear_bundle, {"labels": {"stable": 2}}))):
        c = Client(server)
        for _ in range(20):
            assert c.post("/predict_json", [6, 250, 66.5])[0] == 200
        c.close()
        time.sleep(0.3)  # longer than a batch waits (ShadowWorker.FLUSH_SECONDS)
        assert children(server.proc.pid) == []
        assert "deploykit_shadow_worker_restarts" not in server.request("GET", "/metrics")[2].decode()


def test_a_killed_server_leaves_no_worker_process(bundle: Path, boston_linear_bundle: Path, tmp_path: Path) -> None:
    server = Server(repository(tmp_path / "m", bundle, boston_linear_bundle,
                               {"labels": {"stable": 2}, "shadow": {"version": 1, "share": 1.0}}))
    try:
        c = Client(server)
        assert c.post("/predict_json", [6, 250, 66.5])[0] == 200
        c.close()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = server.request("GET", "/metrics")[2].decode()
            if metric(text, "deploykit_shadow_compared_total", model="boston", shadow_version="1") == 1.0:
                break
            time.sleep(0.1)
        assert metric(text, "deploykit_shadow_worker_restarts_total") == 0.0
        workers = children(server.proc.pid)
        assert len(workers) == 1
        assert b"edge.shadow_process" in Path(f"/proc/{workers[0]}/cmdline").read_bytes()
    finally:
        code, _ = server.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{workers[0]}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{workers[0]}")
