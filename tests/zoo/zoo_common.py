"""What the zoo builders share: the ``Built`` triple, a seeded Keras, writing a CSV."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

Built = tuple[Path, Path, str]


def keras_seeded(seed: int = 0) -> Any:
    """Keras with Python, numpy and backend seeds set (training is then repeatable on one machine)."""
    import keras

    keras.utils.set_random_seed(seed)
    return keras


def save_csv(path: Path, x: np.ndarray, y: np.ndarray, target: str) -> Path:
    """Columns f1..fN and ``target``; 7 significant digits, so float32 values survive the round trip."""
    lines = [",".join([f"f{i + 1}" for i in range(x.shape[1])] + [target])]
    lines += [",".join(f"{v:.9g}" for v in row) + f",{t:.9g}" for row, t in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return path
