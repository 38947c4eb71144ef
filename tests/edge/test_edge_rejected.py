"""Artifacts convert rejected (they missed their tolerance) are never a default and load only when asked."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.bundle import Bundle
from edge.cli import main
from edge.errors import BundleError
from edge.runner import Predictor
from edge_helpers import rewrite_manifest

REJECTION = "max error 2.500% of the output range > 1% on 101 held-out rows"
MESSAGE = (f"the int8 artifact was rejected by convert ({REJECTION}); choose another --variant, or pass "
           "--allow-rejected to use it anyway")


def _reject_int8_and_pass_only_int8(manifest: dict) -> None:
    """int8 rejected by convert, yet recorded as passing parity (say, on golden rows only), and the only one."""
    for artifact in manifest["artifacts"]:
        if artifact["variant"] == "int8":
            artifact.update(status="rejected", rejection=REJECTION)
    manifest["parity"] = {"passed": True, "at": "2026-12-01T00:00:00Z", "reference": "golden.json", "runtimes": ["litert"],
                          "report": "parity.json",
                          "results": [{"artifact": a["path"], "runtime": "litert", "passed": a["variant"] == "int8",
                                       "status": "rejected" if a["variant"] == "int8" else "failed"}
                                      for a in manifest["artifacts"]]}


@pytest.fixture()
def rejected_bundle(bundle_copy: Path) -> Path:
    rewrite_manifest(bundle_copy, _reject_int8_and_pass_only_int8)
    return bundle_copy


def test_the_default_variant_is_never_a_rejected_one(rejected_bundle: Path) -> None:
    assert Bundle.open(rejected_bundle).default_variant() == "float32"  # int8 passed parity, but was rejected


def test_a_rejected_variant_loads_only_when_allowed(rejected_bundle: Path) -> None:
    with pytest.raises(BundleError) as err:
        Predictor(rejected_bundle, "int8")
    assert str(err.value) == MESSAGE
    predictor = Predictor(rejected_bundle, "int8", allow_rejected=True)
    assert predictor.variant == "int8" and predictor.predict_rows([[6, 250, 66.5]]).shape == (1, 1)


@pytest.mark.parametrize("command", [["serve"], ["selftest"], ["predict", "--input", "-"]])
def test_commands_refuse_a_rejected_variant_in_one_line(rejected_bundle: Path, command: list[str], capsys) -> None:
    status = main([command[0], str(rejected_bundle), "--variant", "int8", *command[1:]])
    assert status == 1
    assert capsys.readouterr().err == f"Error: {MESSAGE}\n"


def test_selftest_of_a_rejected_variant_with_allow_rejected(rejected_bundle: Path, capsys) -> None:
    assert main(["selftest", str(rejected_bundle), "--variant", "int8", "--allow-rejected"]) == 0
    assert "selftest passed" in capsys.readouterr().out


def test_info_shows_the_rejection(rejected_bundle: Path, capsys) -> None:
    assert main(["info", str(rejected_bundle)]) == 0
    out = capsys.readouterr().out
    assert f"REJECTED by convert: {REJECTION} (serve needs --allow-rejected)" in out
    assert "default variant: float32" in out
