"""The rounding stage: GPTQ-round the folded model's int8 kernels on DATA (``convert.calibration``).

It takes the fold stage's result (``convert.fold``) and returns a rounded copy, so that the fold before
rounding stays for the variant that keeps some weights in float (dynamic range leaves tensors under 1024
values unquantized, and those must stay exact). The TFLite converter's own rounding then reproduces the
rounded weights exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert import interrupt
from convert.calibration import ROUNDING_ROWS, gptq_round, round_weights
from convert.fold import Fold, SavedModelFold


@dataclass
class Rounding:
    """The GPTQ-rounded copy of a fold: a Keras model or (for a SavedModel source) a SavedModel folder."""

    layers: list[str]
    model: Any = None
    saved_model: Path | None = None

    @property
    def note(self) -> str:
        return f"int8 weights GPTQ-rounded on DATA ({', '.join(self.layers)})"


def rounding_rows(total: int) -> np.ndarray:
    """Indices of up to ``ROUNDING_ROWS`` DATA rows spread evenly over ``total`` rows."""
    return np.unique(np.linspace(0, total - 1, num=min(ROUNDING_ROWS, total)).round().astype(int))


def round_keras(fold: Fold, data: dict[str, np.ndarray]) -> Rounding | None:
    """A copy of ``fold.model`` with its Dense and Conv2D kernels GPTQ-rounded on DATA, fed as the runner
    feeds it (``fold.transforms`` applied); None when no layer was rounded. ``fold`` is not changed."""
    import keras

    from edge.transform import apply

    names = [t.name.split(":")[0] for t in fold.model.inputs]
    if any(n not in data for n in names):
        return None
    pick = rounding_rows(len(data[names[0]]))
    fed = apply(fold.transforms, {n: np.asarray(data[n])[pick] for n in names})
    model = keras.models.clone_model(fold.model)
    model.set_weights(fold.model.get_weights())
    layers = round_weights(model, [fed[n] for n in names])
    return Rounding(layers, model=model) if layers else None


def round_saved_model(fold: SavedModelFold, data: dict[str, np.ndarray], work: Path) -> Rounding | None:
    """GPTQ-round the kernels the fold scaled (their inputs are the folded inputs) and save the SavedModel
    again under ``work``; None when none could be rounded or TensorFlow fails to save (the quantized
    variants then take the fold as it is). ``fold.saved_model`` is not changed. Raises only KeyboardInterrupt."""
    import tensorflow as tf

    layers = []
    for folded in fold.kernels:
        values = np.asarray(data[folded.input], dtype=np.float64).reshape(-1, len(folded.centre))
        z = ((values[rounding_rows(len(values))] - folded.centre) / folded.half).astype(np.float32)
        try:
            rounded = gptq_round(np.asarray(folded.kernel.numpy(), dtype=np.float64), z)
        except np.linalg.LinAlgError:
            continue
        folded.kernel.assign(rounded.astype(np.float32))
        layers.append(folded.target)
    if not layers:
        return None
    directory = Path(work) / "saved_model_rounded"
    try:
        tf.saved_model.save(fold.module, str(directory), signatures={"serving_default": fold.signature})
    except Exception:  # TF's errors are many; the fold as it is still converts
        interrupt.check()
        return None
    return Rounding(layers, saved_model=directory)
