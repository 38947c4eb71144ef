"""The edge extra alone: a fresh venv with `pip install <repo>[edge]` serves, predicts and selftests, no TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edge_helpers import REPO, free_port

pytestmark = pytest.mark.slow

NO_TF = ("import runpy, sys; sys.argv = ['deploykit-edge'] + sys.argv[1:];"
         "import atexit;"
         "atexit.register(lambda: sys.stderr.write('TF_LOADED\\n') if any(m.split('.')[0] in ('tensorflow', 'keras', 'pandas') for m in sys.modules) else None);"
         "from edge.cli import main; raise SystemExit(main())")


@pytest.fixture(scope="module")
def edge_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("edge_venv") / "venv"
    # uv (the set-up's installer, beside this interpreter) when there is one: the same resolution of the same
    # metadata as pip, compiled to bytecode as pip does, in seconds; else the venv's own pip
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([sys.executable, "-m", "venv", *(["--without-pip"] if uv.is_file() else []), str(venv)], check=True)
    # a clean copy of what the build reads (pyproject.toml's packages and readme), nothing else: the rest of the
    # repo is written to while the suite runs (test-artifacts/ by other workers, atomically through *.tmp files
    # that vanish mid-copy)
    src = tmp_path_factory.mktemp("src") / "deploykit"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    for package in ("convert", "edge"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.tmp"))
    install = ([str(uv), "pip", "install", "-q", "--compile-bytecode", "--python", str(venv / "bin/python")]
               if uv.is_file() else [str(venv / "bin/pip"), "install", "-q"])
    r = subprocess.run([*install, f"{src}[edge]"], capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return venv


def test_edge_extra_has_no_tensorflow(edge_venv: Path) -> None:
    r = subprocess.run([str(edge_venv / "bin/python"), "-c", "import importlib.util as u;"
                        "print([m for m in ('tensorflow', 'keras', 'pandas') if u.find_spec(m)])"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.strip() == "[]"


def test_selftest_predict_serve_in_the_edge_venv(edge_venv: Path, bundle: Path, tmp_path: Path) -> None:
    py = str(edge_venv / "bin/python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    cwd = tmp_path  # not the repo: the installed package must be the one imported
    r = subprocess.run([py, "-c", NO_TF, "selftest", str(bundle)], cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TF_LOADED" not in r.stderr
    src = tmp_path / "in.csv"
    src.write_text("rm,tax,age\n6,250,66.5\n7,300,20\n")
    r = subprocess.run([py, "-c", NO_TF, "predict", str(bundle), "--input", str(src)], cwd=cwd, env=env,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3 and "TF_LOADED" not in r.stderr
    port = free_port()
    proc = subprocess.Popen([py, "-c", NO_TF, "serve", str(bundle), "--port", str(port)], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                req = urllib.request.Request(f"http://127.0.0.1:{port}/predict_json", data=b"[6, 250, 66.5]",
                                             headers={"Content-Type": "application/json"})
                body = json.loads(urllib.request.urlopen(req, timeout=2).read())
            except OSError:
                time.sleep(0.1)
        assert body is not None and body["success"] is True
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "TF_LOADED" not in err
    assert "with tflite_runtime" in err or "with ai_edge_litert" in err
