"""The ``edge`` extra's environment markers: which interpreter each device gets (evaluated, not installed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the development environment runs 3.11
    tomllib = pytest.importorskip("tomli")

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _edge_extra() -> list[Requirement]:
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["optional-dependencies"]
    return [Requirement(text) for text in extras["edge"]]


def _installed(machine: str, python: str, system: str = "linux") -> dict[str, str]:
    """What ``pip install deploykit[edge]`` selects on a platform: {name: specifier}, the serve extra aside."""
    environment = {
        "sys_platform": system,
        "platform_system": {"linux": "Linux", "darwin": "Darwin", "win32": "Windows"}[system],
        "platform_machine": machine,
        "python_version": python,
        "python_full_version": f"{python}.0",
        "implementation_name": "cpython",
        "platform_python_implementation": "CPython",
        "os_name": "nt" if system == "win32" else "posix",
        "extra": "",
    }
    out = {}
    for req in _edge_extra():
        if req.name == "deploykit":
            continue
        if req.marker is None or req.marker.evaluate(environment):
            out[req.name] = str(req.specifier)
    return out


LITERT = {"ai-edge-litert": ">=1.2"}
TFLITE_RUNTIME = {"tflite-runtime": "==2.14.0", "numpy": "<2,>=1.23"}


@pytest.mark.parametrize("python", ["3.9", "3.10", "3.11", "3.12", "3.13", "3.14"])
@pytest.mark.parametrize("machine", ["aarch64", "x86_64"])
def test_64_bit_linux_gets_ai_edge_litert(machine: str, python: str) -> None:
    # Pi OS 64-bit on a Pi 3/4/5 reports aarch64; ai-edge-litert has wheels there for 3.9-3.14.
    assert _installed(machine, python) == LITERT


@pytest.mark.parametrize("python", ["3.9", "3.10", "3.11"])
def test_32_bit_pi_gets_tflite_runtime_with_numpy_1(python: str) -> None:
    assert _installed("armv7l", python) == TFLITE_RUNTIME


@pytest.mark.parametrize(
    "machine, python",
    [("armv7l", "3.12"), ("armv7l", "3.13"), ("armv6l", "3.11"), ("armv6l", "3.13")],
)
def test_no_interpreter_where_neither_has_wheels(machine: str, python: str) -> None:
    # tflite-runtime 2.14 has armv7l wheels up to cp311 only; neither package builds armv6l (Pi Zero / Pi 1).
    assert _installed(machine, python) == {}


@pytest.mark.parametrize(
    "machine, python, system, expected",
    [
        ("arm64", "3.12", "darwin", LITERT),
        ("AMD64", "3.12", "win32", LITERT),
        ("AMD64", "3.9", "win32", {}),  # Windows wheels start at cp310
    ],
)
def test_desktops(machine: str, python: str, system: str, expected: dict) -> None:
    assert _installed(machine, python, system) == expected
