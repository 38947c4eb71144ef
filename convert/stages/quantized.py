"""Stages 5 and 6 as convert runs them: fold the input scaling (``convert.fold``), GPTQ-round the int8
kernels (``convert.rounding``), and the SavedModels the quantized variants are converted from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from convert.fold import Fold, SavedModelFold
from convert.reference import export
from convert.rounding import Rounding
from convert.stages.export import Export

AnyFold = Union[Fold, SavedModelFold]
NOT_STANDARDISED = "inputs not standardised (first layer is not Normalization/Dense)"


@dataclass
class Quantized:
    """What the quantized variants are converted from.

    ``saved_model`` is None when there was nothing to fold or round (they then take the float SavedModel,
    and ``reason`` is the note they carry); ``unrounded`` is the fold before rounding, for the dynamic-range
    variant (None when nothing was rounded or no dynamic variant is written); ``unrounded_source``, when
    something was rounded, gives that fold's SavedModel on demand (exported on its first call), for the int8
    search's float operators, which must keep the exact weights (``convert.mixed_precision``)."""

    saved_model: Path | None = None
    transforms: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    unrounded: Path | None = None
    unrounded_note: str = ""
    reason: str = ""
    keras_model: Any = None  # the Keras model ``saved_model`` was exported from (None for a SavedModel fold)
    unrounded_source: Callable[[], Path] | None = None


def fold(exported: Export, data: dict[str, np.ndarray], work: Path) -> tuple[AnyFold | None, str]:
    """The fold of the exported model on DATA: a Keras fold, or for a SavedModel source the fold of its
    graph; with the reason when there is none. Raises only KeyboardInterrupt."""
    if exported.keras_model is not None:
        from convert.fold import fold_inputs

        return fold_inputs(exported.keras_model, data), NOT_STANDARDISED
    from convert.fold import fold_saved_model

    return fold_saved_model(exported.saved_model, data, work)


def round_fold(folded: AnyFold, data: dict[str, np.ndarray], work: Path) -> Rounding | None:
    """GPTQ-round the fold's kernels on DATA (a copy; the fold is kept). Raises only KeyboardInterrupt."""
    from convert.rounding import round_keras, round_saved_model

    if isinstance(folded, SavedModelFold):
        return round_saved_model(folded, data, work)
    return round_keras(folded, data)


def quantized_sources(exported: Export, folded: AnyFold | None, rounded: Rounding | None, reason: str,
                      work: Path, dynamic: bool) -> Quantized:
    """The SavedModels of the fold and the rounding (a Keras model is exported under ``work`` here).

    ``reason`` is the fold stage's; ``dynamic``: whether the dynamic-range variant, which takes the fold
    before rounding, is written."""
    if folded is None or (isinstance(folded, Fold) and not folded.folded and rounded is None):
        return Quantized(reason=reason)
    note = "; ".join(n for n in (folded.note, rounded.note if rounded else "") if n)
    unrounded = keras_model = source = None
    if isinstance(folded, SavedModelFold):
        main = rounded.saved_model if rounded else folded.saved_model
        if rounded:
            source = _once(lambda: folded.saved_model)
    else:
        keras_model = rounded.model if rounded else folded.model
        main = export(keras_model, work / "saved_model_folded")
        if rounded:
            source = _once(lambda: export(folded.model, work / "saved_model_unrounded"))
    if source is not None and dynamic:
        unrounded = source()
    return Quantized(main, list(folded.transforms), note, unrounded, folded.note, reason, keras_model, source)


def _once(make: Callable[[], Path]) -> Callable[[], Path]:
    """``make`` called on the first call only; later calls return its first result."""
    done: list[Path] = []

    def get() -> Path:
        if not done:
            done.append(make())
        return done[0]

    return get
