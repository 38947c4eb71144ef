"""convert.data and convert.dataset: DATA validation (other separators, duplicate columns, ragged rows, huge cells,
binary files, NaN in an .npz), each refused with one exact message; BOM, CRLF and blank lines read."""

from __future__ import annotations

from pathlib import Path

import pytest

from convert.data import read_csv, read_npz
from convert.errors import DeployKitError

HEADER = "rm,tax,age,medv\n"
ROWS = "6,250,66.5,20\n" * 12


def write(tmp_path: Path, text: str | bytes, name: str = "d.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, newline="")
    return path


@pytest.mark.parametrize("sep, label", [(";", "semicolon"), ("\t", "tab")])
def test_csv_with_another_separator(tmp_path: Path, sep: str, label: str) -> None:
    path = write(tmp_path, (HEADER + ROWS).replace(",", sep))
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    shown = repr(HEADER.strip().replace(",", sep))
    assert str(e.value) == f"data file d.csv looks {label}-separated (header {shown}); save it as comma-separated CSV"


def test_csv_with_a_duplicate_column(tmp_path: Path) -> None:
    """A column named twice in the header is refused by name (not renamed `rm.1`)."""
    path = write(tmp_path, "rm,tax,age,rm\n" + "6,250,66.5,7\n" * 12)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv has the column 'rm' twice in its header; give every column a distinct name"


def test_csv_rows_longer_or_shorter_than_the_header(tmp_path: Path) -> None:
    """A row longer or shorter than the header is refused with its line (no column is shifted)."""
    path = write(tmp_path, HEADER + "6,250,66.5,20,5\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has 5 cells at line 2, the header has 4 columns; "
                            "make every row as long as the header")
    path = write(tmp_path, HEADER + ROWS + "6,250\n")
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has 2 cells at line 14, the header has 4 columns; "
                            "make every row as long as the header")


def test_csv_with_a_huge_cell(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER + "6,250," + "1" * 200_000 + ",20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv is not a readable CSV (field larger than field limit (131072) at line 2); fix the file"
    path = write(tmp_path, HEADER + "6,250,x" + "y" * 100_000 + ",20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == (f"data file d.csv has a non-numeric or missing value {'x' + 'y' * 39!r}... (100,001 characters) "
                            "in column 'age' at row 1 (line 2); clean the data (every cell must be a finite number)")


def test_csv_row_numbers_count_data_rows_and_name_the_line(tmp_path: Path) -> None:
    """Rows count data rows from 1, as deploykit-edge predict does; the line is the file's (blank lines and a
    quoted cell over two lines are counted in the line, not in the row)."""
    path = write(tmp_path, HEADER + "6,250,66.5,20\n\n6,250,\"66\n\",20\n6,abc,66.5,20\n" + ROWS)  # a cell over 2 lines
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has a non-numeric or missing value 'abc' in column 'tax' at row 3 (line 6); "
                            "clean the data (every cell must be a finite number)")
    path = write(tmp_path, HEADER + "6,250,66.5,20\n\n6,abc,66.5,20\n" + ROWS)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == ("data file d.csv has a non-numeric or missing value 'abc' in column 'tax' at row 2 (line 4); "
                            "clean the data (every cell must be a finite number)")


def test_npz_with_nan_names_the_row_and_the_index(tmp_path: Path) -> None:
    """A NaN in an .npz array names its row counted from 1 and its 0-based index."""
    import numpy as np

    from convert.dataset import _from_npz
    from convert.reference import Reference, TensorSpec

    x = np.ones((5, 3), dtype=np.float32)
    x[2, 1] = np.nan
    np.savez(tmp_path / "d.npz", features=x)
    ref = Reference(source=tmp_path / "m.keras", inputs=[TensorSpec("features", "float32", [None, 3])], outputs=[])
    with pytest.raises(DeployKitError) as e:
        _from_npz(ref, tmp_path / "d.npz", None)
    assert str(e.value) == "DATA array 'features' has NaN or infinite values (first at row 3, index 2); clean the data"


def test_binary_files_as_csv_and_npz(tmp_path: Path) -> None:
    path = write(tmp_path, HEADER.encode() + b"\xff\xfe\x00\x01" * 100)
    with pytest.raises(DeployKitError) as e:
        read_csv(path)
    assert str(e.value) == "data file d.csv is not UTF-8 text (it holds the byte 0xff); pass a CSV saved as UTF-8"
    path = write(tmp_path, b"\x93NUMPY garbage" * 10, "d.npz")
    with pytest.raises(DeployKitError) as e:
        read_npz(path)
    assert str(e.value) == (f"data file {str(path)!r} is not an .npz (not a zip archive: corrupt or another format); "
                            "save the arrays with numpy.savez")


def test_csv_with_bom_crlf_and_blank_lines_reads(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff" + (HEADER + ROWS + "\n").replace("\n", "\r\n"))
    table = read_csv(path)
    assert table.columns == ["rm", "tax", "age", "medv"] and table.values.shape == (12, 4)
