"""Stage 2, read the data: DATA aligned to the model's inputs, and the feature statistics of a tabular model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from convert.data import Dataset
from convert.dataset import load_dataset, tabular_layout
from convert.golden import feature_columns, feature_stats, reference_size
from convert.reference import Reference
from convert.tflite import check_calibration_rows


@dataclass
class Sources:
    """DATA as the model takes it; ``layout`` is the tabular layout (None: not tabular) and ``features``
    the manifest's per-feature statistics (None when DATA has no named features)."""

    dataset: Dataset
    layout: str | None
    features: list[dict[str, Any]] | None


def read_data(ref: Reference, data: Path, target: str | None, features: Sequence[str] | None) -> Sources:
    """Read DATA for ``ref``.

    Raises:
        DeployKitError: DATA cannot be read or does not fit the model (``convert.dataset.load_dataset``), or it
        has too few rows to calibrate int8.
    """
    dataset = load_dataset(ref, Path(data), target, features)
    check_calibration_rows(dataset.rows)
    layout = tabular_layout(ref) if dataset.feature_names else None
    columns = feature_columns(dataset, layout) if layout else []
    stats = [feature_stats(*col, sample=reference_size(len(columns))) for col in columns] if layout else None
    return Sources(dataset, layout, stats)
