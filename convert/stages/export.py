"""Stage 4, export the SavedModel every TFLite variant and the TFJS graph model are converted from."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from convert.reference import Reference, export


@dataclass
class Export:
    """The SavedModel of the model the artifacts are made from (``keras_model``, None for a SavedModel
    source) and a note when that model is not the reference itself."""

    saved_model: Path
    keras_model: Any
    note: str = ""


UNROLLED_NOTE = "recurrent layers unrolled over their fixed sequence length (no while loop)"


def export_reference(ref: Reference, work: Path) -> Export:
    """Export ``ref`` (a SavedModel source is used as it is) under ``work``.

    Recurrent layers over a fixed number of steps are unrolled first (``convert.keras_graph.unrolled``),
    because a while loop over TensorLists converts to TFLite builtins only for a batch of one and does not
    run in TFJS graph models; only the unrolled copy is exported then. The golden outputs always come from
    the reference model.
    """
    if ref.keras_model is None:
        return Export(ref.export_saved_model(work / "saved_model"), None)
    from convert.keras_graph import unrolled

    copy = unrolled(ref.keras_model)
    if copy is None:
        return Export(ref.export_saved_model(work / "saved_model"), ref.keras_model)
    return Export(export(copy, work / "saved_model_unrolled"), copy, UNROLLED_NOTE)
