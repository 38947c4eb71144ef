"""convert.pipeline's output checks, through ``deploykit convert`` and ``check_output``: --force never deletes MODEL,
DATA or a folder that is not a bundle; the bundle folder gets mkdir's mode."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from convert.errors import DeployKitError
from convert.pipeline import check_output
from tests.helpers import BOSTON_CSV, one_error_line, run_cli


def test_force_never_replaces_the_folder_holding_model_or_data(tmp_path: Path) -> None:
    """`--force` never replaces a folder that holds MODEL or DATA (`convert Y/m.keras --data Y/d.csv --out Y --force`):
    one error line, both files kept."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "m.keras").write_bytes(b"model")
    shutil.copy(BOSTON_CSV, work / "d.csv")
    result = run_cli("convert", work / "m.keras", "--data", work / "d.csv", "--target", "medv", "--out", work, "--force")
    assert one_error_line(result) == (
        f"Error: output {str(work)!r} holds the input {str(work / 'm.keras')!r}, which writing the bundle there "
        "would delete; choose another --out"
    )
    assert sorted(p.name for p in work.iterdir()) == ["d.csv", "m.keras"]


def test_force_replaces_only_a_bundle_or_an_empty_folder(tmp_path: Path) -> None:
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(DeployKitError) as e:
        check_output(mine, force=True)
    assert str(e.value) == (
        f"output {str(mine)!r} is not a deploykit bundle (no manifest.json) and is not empty; --force replaces only "
        "a bundle: choose another --out, or remove the folder yourself"
    )
    (tmp_path / "empty").mkdir()
    check_output(tmp_path / "empty", force=True)  # no error
    (mine / "manifest.json").write_text("{}")
    check_output(mine, force=True)  # a bundle: replaced


def test_out_inside_a_saved_model_folder_or_the_root_is_refused(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    saved.mkdir()
    with pytest.raises(DeployKitError) as e:
        check_output(saved / "b", force=False, inputs=[saved, BOSTON_CSV])
    assert str(e.value) == f"output {str(saved / 'b')!r} is inside the input folder {str(saved)!r}; choose an --out outside it"
    with pytest.raises(DeployKitError) as e:
        check_output(Path("/"), force=True)
    assert str(e.value) == "output '/' is the root folder; choose a bundle folder with --out"


def test_bundle_folder_gets_mkdirs_mode_not_0700(boston_linear_bundle: Path) -> None:
    """The bundle folder gets mkdir's mode under the umask (not the staging folder's 0700), so a service user
    can read it."""
    umask = os.umask(0)
    os.umask(umask)
    assert boston_linear_bundle.stat().st_mode & 0o777 == 0o777 & ~umask


def test_convert_errors_have_no_blank_line_before_them(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "keep.txt").write_text("mine")
    result = run_cli("convert", tmp_path / "m.keras", "--data", BOSTON_CSV, "--out", tmp_path / "b")
    assert one_error_line(result).startswith(f"Error: output {str(tmp_path / 'b')!r} already exists")


