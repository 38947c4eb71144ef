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


def read_csv(path: Path) -> Table:
    """Read a numeric CSV with a header row.

    Raises:
        DeployKitError: missing/unreadable file, no rows, non-numeric cells or NaN (names row and column).
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DeployKitError(f"data file {str(path)!r} does not exist; pass a CSV or .npz file with --data")
    try:
        frame = pd.read_csv(path, keep_default_na=False, na_values=[], dtype=str)
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
            raise DeployKitError(
                f"data file {path.name} has a non-numeric or missing value {cell!r} in column {name!r} at row {row + 2} "
                f"(line {row + 2} of the file); clean the data (every cell must be a finite number)"
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
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError) as exc:
        raise DeployKitError(f"data file {str(path)!r} is not a readable .npz ({exc}); re-save it with numpy.savez") from None
