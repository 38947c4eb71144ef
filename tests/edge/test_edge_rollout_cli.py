"""`deploykit-edge status MODELS/` and `serve MODELS/`'s refusals, through the real CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from edge_helpers import PYTHON, run


def test_status_prints_the_repository_as_the_server_sees_it(bundle: Path, tmp_path: Path) -> None:
    models = tmp_path / "mo\x1b[2Jdels"  # a path is data too: escaped, never sent to the terminal
    shutil.copytree(bundle, models / "boston" / "1")
    shutil.copytree(bundle, models / "boston" / "2")
    (models / "boston" / "2" / "manifest.json").write_text("{")
    (models / "rollout.json").write_text(json.dumps({"schema_version": 1, "models": {"boston": {
        "labels": {"stable": 1, "canary": 2}}}}))
    result = run([PYTHON, "-m", "edge", "status", str(models)])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    shown = str(models).replace("\x1b", "\\x1b")
    assert lines[0] == f"repository {shown} (config {shown}/rollout.json; scanned every 2 s)"
    assert lines[1] == "model boston"
    assert lines[2] == "  version    1  AVAILABLE  float32"
    assert lines[3].startswith("  version    2  END        ") and "manifest.json" in lines[3]
    assert lines[4] == "  labels: stable -> 1"
    assert lines[5].startswith("  label canary: wants version 2 (END: ")
    result = run([PYTHON, "-m", "edge", "status", str(models), "--json"])
    info = json.loads(result.stdout)
    assert [v["state"] for v in info["models"]["boston"]["versions"]] == ["AVAILABLE", "END"]
    shutil.rmtree(models / "boston" / "1")
    result = run([PYTHON, "-m", "edge", "status", str(models)])
    assert result.returncode == 1


def test_serve_refuses_a_repository_with_several_workers(bundle: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(bundle, models / "boston" / "1")
    result = run([PYTHON, "-m", "edge", "serve", str(models), "--workers", "2", "--port", "0"])
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --workers N serves one bundle folder only; serve a model repository (MODELS/, --rollout-config) "
        "with --workers 1: the canary's rollback, the shadow and the feedback ids are kept per process")


def test_serve_banner_names_the_model_folder_and_its_version(bundle: Path, tmp_path: Path) -> None:
    """A repository's banner says the model as its URLs name it (the folder, not the manifest's name) and
    the version the default route answers with."""
    from edge_helpers import Server

    models = tmp_path / "models"
    shutil.copytree(bundle, models / "houses" / "1")
    shutil.copytree(bundle, models / "houses" / "2")
    code, err = Server(models).stop()
    assert code == 0, err
    assert ": serving houses version 2 of 2 AVAILABLE float32 (" in err, err
