"""Stage 9, write each TFJS format (the graph model from the SavedModel, the layers model from the Keras
model) and copy the web page. Each format succeeds or is skipped with its reason; a failed format never
loses the bundle's other artifacts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from convert.reference import Reference
from convert.stages.export import Export
from convert.stages.written import Progress, Written, failure

MIN_TFJS = "4.22.0"
# ``convert.tfjs_layers`` ends its refusals with this clause; it is dropped when the graph model was not written
GRAPH_CLAUSE = "; the graph model is still written"
GRAPH_DIR = "web/model/graph"
LAYERS_DIR = "web/model/layers"


def shard_bytes(folder: Path) -> int:
    """Bytes of the weight shards beside ``model.json`` in ``folder``."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file() and p.name != "model.json")


def write_graph(exported: Export, written: Written, progress: Progress, input_names: Sequence[str] = ()) -> None:
    """Convert the SavedModel to ``web/model/graph`` (``convert.tfjs_graph``; ``input_names``: the manifest's,
    for the io map), or skip it with tensorflowjs's reason (an op TFJS lacks, say). Raises only KeyboardInterrupt."""
    progress("Converting the TFJS graph model")
    from convert import tfjs_graph

    graph_dir = written.staging / GRAPH_DIR
    try:
        graph = tfjs_graph.write_graph_model(exported.saved_model, graph_dir, input_names)
    except Exception as exc:
        reason = failure(exc)
        shutil.rmtree(graph_dir, ignore_errors=True)
        written.skip("tfjs_graph", reason, GRAPH_DIR + "/")
        return
    written.add(f"{GRAPH_DIR}/model.json", "tfjs_graph", "float32", transforms=[], io=graph["io"],
                runtime={"min_tfjs": MIN_TFJS}, shrinks=None,
                note="; ".join(n for n in (exported.note, *graph.get("notes", [])) if n),
                extra_bytes=shard_bytes(graph_dir))


def write_layers(ref: Reference, written: Written, progress: Progress) -> None:
    """Write the reference's Keras layers to ``web/model/layers`` (``convert.tfjs_layers``), or skip it with the
    reason (a SavedModel source, a layer the writer lacks). Raises only KeyboardInterrupt."""
    progress("Writing the TFJS layers model")
    if ref.keras_model is None:
        written.skip("tfjs_layers", "the source is a SavedModel, which has no Keras layers to write", LAYERS_DIR + "/")
        return
    from convert import tfjs_layers

    layers_dir = written.staging / LAYERS_DIR
    try:
        done = tfjs_layers.write_layers_model(ref.keras_model, layers_dir)
    except tfjs_layers.UnsupportedLayers as exc:
        reason = str(exc)
    except Exception as exc:
        reason = failure(exc)
    else:
        io = {"inputs": {s.name: s.name for s in ref.inputs}, "outputs": {s.key: s.name for s in ref.outputs}}
        written.add(f"{LAYERS_DIR}/model.json", "tfjs_layers", "float32", transforms=[], io=io,
                    runtime={"min_tfjs": MIN_TFJS}, shrinks=None, note="; ".join(done.get("notes", [])),
                    extra_bytes=shard_bytes(layers_dir))
        return
    shutil.rmtree(layers_dir, ignore_errors=True)
    if not any(a["format"] == "tfjs_graph" for a in written.artifacts):
        reason = reason.replace(GRAPH_CLAUSE, "")
    written.skip("tfjs_layers", reason, LAYERS_DIR + "/")


def copy_page(written: Written, progress: Progress) -> None:
    """Copy the built page into ``web/`` (``convert.site``); a skip with the build command when it is not built."""
    progress("Copying the web page")
    from convert.site import copy_site

    note = copy_site(written.staging / "web")
    if note:
        written.skip("web", note, "web/index.html", row_variant="", not_written=False)
