"""Fixtures for the edge runner tests: a real bundle made by the real `deploykit` CLI (cached), real servers."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from edge_helpers import ENV, PYTHON, REPO, Server, free_port, rewrite_manifest, run  # noqa: F401

@pytest.fixture(scope="session")
def bundle(request: pytest.FixtureRequest) -> Path:
    """The Boston MLP bundle of ``deploykit train`` + ``deploykit convert`` (tests/conftest.py; cached by the
    sha256 of its sources, so a repeat run needs no TensorFlow), or the bundle DEPLOYKIT_TEST_BUNDLE names."""
    named = os.environ.get("DEPLOYKIT_TEST_BUNDLE")
    if named and (Path(named) / "manifest.json").is_file():
        return Path(named)
    return request.getfixturevalue("boston_mlp_bundle")


@pytest.fixture()
def bundle_copy(bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may alter."""
    dest = tmp_path / "bundle"
    shutil.copytree(bundle, dest)
    return dest


@pytest.fixture()
def server_factory() -> Iterator:
    started: list[Server] = []

    def make(bundle: Path, *args: str, log_dir: Path | None = None) -> Server:
        server = Server(bundle, *args, log_dir=log_dir)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def module_server(bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by a module's read-mostly tests, with logs and one allowed CORS origin."""
    logs = tmp_path_factory.mktemp("edge_logs")
    server = Server(bundle, "--allow-origin", "http://allowed.example", "--max-batch", "50", log_dir=logs)
    server.log_dir = logs  # type: ignore[attr-defined]
    yield server
    server.stop()
