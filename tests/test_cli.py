"""``deploykit train`` and ``deploykit demo`` check their arguments before they work: one exact error line each."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import one_error_line, run_cli


def test_train_checks_its_output_before_training(tmp_path: Path) -> None:
    """`train` checks --out (a folder, a missing parent folder) before it trains."""
    (tmp_path / "dir.keras").mkdir()
    result = run_cli("train", "--out", tmp_path / "dir.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'dir.keras')!r}: it is a folder; "
                                      "pass a FILE.keras path with --out")
    result = run_cli("train", "--out", tmp_path / "no" / "m.keras")
    assert one_error_line(result) == (f"Error: cannot write {str(tmp_path / 'no' / 'm.keras')!r}: folder "
                                      f"{str(tmp_path / 'no')!r} does not exist; create it first")


def test_demo_checks_its_folder_and_ports(tmp_path: Path) -> None:
    """`demo` checks its --out (a file is refused by name) and its ports before it works."""
    (tmp_path / "file").write_text("x")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "file")
    assert one_error_line(result) == (f"Error: --out {str(tmp_path / 'file')!r} is a file; the demo needs a working "
                                      "folder: choose another --out")
    result = run_cli("demo", "--no-serve", "--out", tmp_path / "d", "--edge-port", "70000")
    assert one_error_line(result) == "Error: --edge-port 70000 is not a port number: pass 0-65535"
