"""``deploykit train`` and ``deploykit demo`` check their arguments before they work: one exact error line each."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from convert.quiet import ENV as CLI_ENV
from tests.helpers import one_error_line, run_cli


def test_the_session_runs_tensorflow_as_the_cli_does() -> None:
    """The suite runs with the CLI's environment (oneDNN off, TensorFlow quiet) from its start: TensorFlow
    reads it once, at import, so a library call in a worker computes what `deploykit` computes."""
    assert {k: os.environ.get(k) for k in CLI_ENV} == CLI_ENV


def test_an_in_process_command_leaves_the_environment_as_it_found_it(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """`main()` sets the CLI's environment (as in its own process); run_cli puts the caller's back."""
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS")
    monkeypatch.setenv("DEPLOYKIT_DEBUG", "1")
    before = dict(os.environ)
    (tmp_path / "dir.keras").mkdir()
    assert run_cli("train", "--out", tmp_path / "dir.keras").returncode == 1
    assert dict(os.environ) == before


def test_train_checks_its_output_before_training(tmp_path: Path) -> None:
    """`train` checks --out (a folder, a missing parent folder) before it trains."""
    (tmp_path / "dir.keras").mkdir()
    result = run_cli("train", "--out", tmp_path / "dir.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'dir.keras')!r}: it is a folder; "
                                      "pass a FILE.keras path with --out")
    result = run_cli("train", "--out", tmp_path / "no" / "m.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'no' / 'm.keras')!r}: folder "
                                      f"{str(tmp_path / 'no')!r} does not exist; create it first")
    result = run_cli("train", "--out", "/sys/m.keras")  # read-only even for root: it trained first, then failed
    assert one_error_line(result) == ("Error: cannot write '/sys/m.keras': folder '/sys' is not writable "
                                      "(Permission denied); pass --out in a folder you can write")


def test_demo_checks_its_folder_and_ports(tmp_path: Path) -> None:
    """`demo` checks its --out (a file is refused by name) and its ports before it works."""
    (tmp_path / "file").write_text("x")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "file")
    assert one_error_line(result) == (f"Error: --out {str(tmp_path / 'file')!r} is a file; the demo needs a working "
                                      "folder: choose another --out")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "d", "--edge-port", "70000")
    assert one_error_line(result) == "Error: --edge-port 70000 is not a port number: pass 0-65535"
