"""Create and cache the TFLite runtime environments the parity engine drives as subprocesses.

Each runtime gets its own virtual environment holding only what a Raspberry Pi would hold: the
interpreter, numpy, jsonschema and this project installed with ``--no-deps`` (so ``edge`` is
importable). No TensorFlow. The environments live under ``~/.cache/deploykit/runtimes/<name>``
(``DEPLOYKIT_RUNTIMES_DIR`` overrides the parent folder) and are re-used across runs; the project copy
inside is re-installed when the source of ``edge/`` changes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.errors import DeployKitError
from edge.interpreter import LIGHT_RUNTIMES

RUNTIMES_ENV = "DEPLOYKIT_RUNTIMES_DIR"
MARKER = "deploykit-runtime.json"

# runtime name -> (edge.interpreter runtime name, pip requirements)
_PINS = {"litert": ("", ["numpy", "jsonschema"]), "tflite-runtime": ("==2.14.0", ["numpy<2", "jsonschema"])}
SPECS: dict[str, tuple[str, list[str]]] = {
    name: (module, [dist + _PINS[name][0], *_PINS[name][1]]) for name, (module, dist) in LIGHT_RUNTIMES.items()
}


@dataclass(frozen=True)
class RuntimeEnv:
    """A ready runtime environment: its python, the interpreter module it runs and versions."""

    name: str
    module: str
    python: Path
    versions: dict[str, str]


def runtimes_dir() -> Path:
    """The parent folder of the cached runtime environments."""
    override = os.environ.get(RUNTIMES_ENV)
    return Path(override).expanduser() if override else Path.home() / ".cache" / "deploykit" / "runtimes"


def project_root() -> Path:
    """The source tree this deploykit runs from (holds pyproject.toml, edge/, convert/).

    Raises:
        DeployKitError: deploykit was installed without its source tree.
    """
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file() or not (root / "edge").is_dir():
        raise DeployKitError(
            f"cannot find deploykit's source tree next to {Path(__file__).resolve().parents[1]} to install into the "
            "runtime environments; run deploykit from a source checkout (pip install -e .)"
        )
    return root


def edge_source_hash(root: Path | None = None) -> str:
    """A sha256 over the files of ``edge/`` (and pyproject.toml): changes trigger a re-install."""
    root = root or project_root()
    digest = hashlib.sha256()
    files = sorted(p for p in (root / "edge").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files + [root / "pyproject.toml"]:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _install_hint(name: str) -> str:
    pkgs = " ".join(f"'{r}'" for r in SPECS[name][1])
    return (f"check network access to PyPI and retry, or create it yourself: python3 -m venv {runtimes_dir() / name} && "
            f"{runtimes_dir() / name}/bin/pip install {pkgs} && {runtimes_dir() / name}/bin/pip install --no-deps "
            "<deploykit source>; or leave it out with --runtimes")


def _run(cmd: list[str], name: str, what: str, timeout: float = 900) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")})
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DeployKitError(f"runtime {name}: {what} failed ({exc}); {_install_hint(name)}") from None
    if proc.returncode != 0:
        lines = [line for line in (proc.stderr or proc.stdout).strip().splitlines() if line.strip()]
        last = lines[-1].strip() if lines else f"exit status {proc.returncode}"
        raise DeployKitError(f"runtime {name}: {what} failed ({last}); {_install_hint(name)}")
    return proc.stdout


def _clean_copy(root: Path, dest: Path) -> Path:
    """Copy the project's packaging files and packages (not .venv, .git, tests) for a clean install."""
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (root / name).is_file():
            shutil.copy2(root / name, dest / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("edge", "convert"):
        shutil.copytree(root / package, dest / package, ignore=ignore)
    return dest


PROBE = ("import json, sys; from edge.interpreter import pick; r = pick(sys.argv[1]); import numpy;"
         "print(json.dumps({'runtime': r.name, 'version': r.version, 'numpy': numpy.__version__,"
         " 'python': sys.version.split()[0],"
         " 'tensorflow': __import__('importlib.util').util.find_spec('tensorflow') is not None}))")


def ensure(name: str, progress: Any = None) -> RuntimeEnv:
    """Return the runtime environment ``name`` (``litert`` or ``tflite-runtime``), creating it if needed.

    Raises:
        DeployKitError: an unknown runtime, or the environment cannot be created or its interpreter
        cannot be imported (the message says how to install it).
    """
    if name not in SPECS:
        raise DeployKitError(f"unknown TFLite runtime {name!r}; choose one of {', '.join(SPECS)}")
    module, requirements = SPECS[name]
    root = project_root()
    venv = runtimes_dir() / name
    python = venv / "bin" / "python"
    marker_path = venv / MARKER
    source_hash = edge_source_hash(root)
    marker: dict[str, Any] = {}
    if marker_path.is_file():
        try:
            marker = json.loads(marker_path.read_text())
        except (OSError, json.JSONDecodeError):
            marker = {}
    fresh = python.is_file() and marker.get("requirements") == requirements
    if not fresh:
        if progress:
            progress(f"Creating the {name} environment in {venv} (once)")
        try:
            if venv.exists():
                shutil.rmtree(venv)
            venv.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DeployKitError(f"runtime {name}: creating the virtual environment failed ({exc.strerror}: {venv.parent}); "
                                 f"{_install_hint(name)}") from None
        _run([sys.executable, "-m", "venv", str(venv)], name, "creating the virtual environment")
        _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements], name,
             f"pip install {' '.join(requirements)}")
        marker = {"requirements": requirements}
    if marker.get("edge_hash") != source_hash:
        if progress and fresh:
            progress(f"Updating deploykit in the {name} environment")
        with tempfile.TemporaryDirectory(prefix="deploykit-src-") as tmp:
            src = _clean_copy(root, Path(tmp) / "deploykit")
            _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                  "--force-reinstall", str(src)], name, "installing deploykit (--no-deps)")
        marker["edge_hash"] = source_hash
        marker.pop("versions", None)
    if "versions" not in marker:
        out = _run([str(python), "-c", PROBE, module], name, f"importing {module}", timeout=120)
        probe = json.loads(out.strip().splitlines()[-1])
        if probe.pop("tensorflow"):
            raise DeployKitError(f"runtime {name}: the environment {venv} holds TensorFlow, which a device would not; "
                                 f"delete {venv} and rerun")
        marker["versions"] = probe
        marker_path.write_text(json.dumps(marker, indent=1))
    return RuntimeEnv(name=name, module=module, python=python, versions=dict(marker["versions"]))
