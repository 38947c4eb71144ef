"""Reading DATA (CSV for tabular models, .npz for any model) and the built-in Boston data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.errors import DeployKitError

BOSTON_CSV = Path(__file__).with_name("data") / "boston.csv"
BOSTON_FEATURES = ("rm", "tax", "age")
BOSTON_TARGET = "medv"

# Labels and units the form and the manifest show for the Boston features.
KNOWN_FEATURES: dict[str, tuple[str, str]] = {
    "rm": ("Number of rooms", "rooms"),
    "tax": ("Property tax rate per $10,000", "dollars per $10,000"),
    "age": ("Proportion of buildings built before 1940", "percent"),
}

MIN_ROWS = 10


@dataclass
class Table:
    """A numeric table read from CSV: column names, float64 values, and the source path."""

    columns: list[str]
    values: np.ndarray
    path: Path

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.columns.index(name)]


@dataclass
class Dataset:
    """DATA aligned to the model: one array per model input, optional labels, optional feature names."""

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    feature_names: list[str] | None = None
    path: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])


def _shown(cell: str, limit: int = 40) -> str:
    """A cell for an error message: repr, cut to ``limit`` characters."""
    return repr(cell) if len(cell) <= limit else repr(cell[:limit]) + f"... ({len(cell):,} characters)"


def _check_structure(path: Path) -> list[int]:
    """Refuse what pandas would misread silently: a ;- or tab-separated file, duplicate column names
    (renamed ``x.1``), and rows with more or fewer cells than the header (a longer first row turns the
    first column into the index and shifts every column).

    Returns:
        the line of the file each data row starts on (1-based; blank lines skipped, as pandas does).

    Raises:
        DeployKitError: the first such problem, naming the line.
    """
    import csv

    reader = None
    lines: list[int] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return lines  # pandas reports the empty file
            names = [c.strip() for c in header]
            if len(names) == 1:
                for sep, label in ((";", "semicolon"), ("\t", "tab")):
                    if sep in names[0]:
                        raise DeployKitError(
                            f"data file {path.name} looks {label}-separated (header {_shown(header[0])}); "
                            "save it as comma-separated CSV"
                        )
            seen: set[str] = set()
            for name in names:
                if name in seen:
                    raise DeployKitError(
                        f"data file {path.name} has the column {name!r} twice in its header; give every column a distinct name"
                    )
                seen.add(name)
            end = reader.line_num  # the line the previous record ended on (a quoted cell may span lines)
            for cells in reader:
                start, end = end + 1, reader.line_num
                if not cells or (len(cells) == 1 and not cells[0].strip()):
                    continue  # a blank line
                lines.append(start)
                if len(cells) != len(names):
                    raise DeployKitError(
                        f"data file {path.name} has {len(cells)} cells at line {reader.line_num}, the header has "
                        f"{len(names)} columns; make every row as long as the header"
                    )
    except csv.Error as exc:
        where = f" at line {reader.line_num}" if reader is not None else ""
        raise DeployKitError(f"data file {path.name} is not a readable CSV ({exc}{where}); fix the file") from None
    except UnicodeDecodeError as exc:
        raise DeployKitError(
            f"data file {path.name} is not UTF-8 text (it holds the byte 0x{exc.object[exc.start]:02x}); "
            "pass a CSV saved as UTF-8"
        ) from None
    return lines


def read_csv(path: Path) -> Table:
    """Read a numeric CSV with a header row.

    Raises:
        DeployKitError: missing/unreadable file, no rows, a ;-separated file, duplicate columns, rows
        longer or shorter than the header, non-numeric cells or NaN (names row and column).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"data file {str(path)!r} does not exist; pass a CSV or .npz file with --data")
    lines = _check_structure(path)
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[], dtype=str, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DeployKitError(f"data file {str(path)!r} is not a readable CSV ({str(exc).splitlines()[0]}); fix the file") from None
    if frame.shape[0] == 0:
        raise DeployKitError(f"data file {str(path)!r} has no rows; pass a CSV with a header and data rows")
    columns = [str(c).strip() for c in frame.columns]
    values = np.empty(frame.shape, dtype=np.float64)
    for j, name in enumerate(columns):
        numeric = pd.to_numeric(frame.iloc[:, j].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(numeric))
        if bad.size:
            row = int(bad[0])
            cell = frame.iloc[row, j]
            # rows are numbered from 1 over data rows (the header is line 1), as deploykit-edge predict does
            line = f" (line {lines[row]})" if len(lines) == frame.shape[0] else ""
            raise DeployKitError(
                f"data file {path.name} has a non-numeric or missing value {_shown(cell)} in column {name!r} at row {row + 1}"
                f"{line}; clean the data (every cell must be a finite number)"
            )
        values[:, j] = numeric
    return Table(columns=columns, values=values, path=path)


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Read an .npz of arrays named as the model's inputs (plus an optional label array).

    Raises:
        DeployKitError: missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"data file {str(path)!r} does not exist; pass a CSV or .npz file with --data")
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):
        raise DeployKitError(f"data file {str(path)!r} is not an .npz (not a zip archive: corrupt or another format); "
                             "save the arrays with numpy.savez")
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as exc:
        raise DeployKitError(f"data file {str(path)!r} is not a readable .npz ({exc}); re-save it with numpy.savez") from None
