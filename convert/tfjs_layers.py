"""Write a Keras 3 model as a TFJS *layers* model that TFJS 4.22 ``tf.loadLayersModel`` loads.

``tensorflowjs.converters.save_keras_model`` writes Keras 3 configs verbatim, and TFJS 4.22 cannot
read them (``InputLayer`` has ``batch_shape`` instead of ``batch_input_shape``, dtype policies are
dicts, Functional ``inbound_nodes`` use the new ``{"args": ..., "kwargs": ...}`` form, and there
is no ``Normalization`` layer in tfjs-layers). The kit rebuilds the topology layer by layer in
the Keras-2 form tfjs-layers reads (``convert.tfjs_layers_topology``), from a whitelist of layers whose TFJS
implementation computes the same function (one writer module per family: ``convert.tfjs_layers_core``,
``_norm``, ``_conv``, ``_rnn``, ``_wrappers``), and this module writes model.json and the weights under the
names TFJS matches (``<layer>/<weight>``).

Anything outside the whitelist (or a supported class used with an option TFJS lacks, such as
``GRU(reset_after=True)``) raises :class:`UnsupportedLayers`; the caller still writes the graph
model. Nothing happens on import besides defining things; TensorFlow/tensorflowjs are imported by
the caller's model or lazily.
"""

from __future__ import annotations

import json
import os
import pathlib
from typing import Any

from convert.tfjs_layer_config import UnsupportedLayers
from convert.tfjs_layers_topology import SUPPORTED_LAYERS, topology

__all__ = ["UnsupportedLayers", "write_layers_model", "SUPPORTED_LAYERS"]

MODEL_FILE = "model.json"


def write_layers_model(model: Any, out_dir: pathlib.Path) -> dict[str, Any]:
    """Write ``out_dir/model.json`` + weight shards loadable by TFJS 4.22 ``tf.loadLayersModel``.

    ``model`` is a built Keras 3 Sequential or Functional model. Returns
    ``{"files": [relative file names, model.json first], "notes": [...]}``.

    Raises UnsupportedLayers (nothing written) when a layer, or an option of one, has no TFJS
    equivalent that computes the same function; the message names every such layer.
    Raises OSError if ``out_dir`` cannot be written.
    """
    import keras

    notes: list[str] = []
    weights: list[dict[str, Any]] = []
    model_config = topology(model, notes, weights)

    names = [w["name"] for w in weights]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise UnsupportedLayers("TFJS layers model not written: duplicate weight names "
                                f"{', '.join(duplicates)}; the graph model is still written")

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if weights:
        # tensorflowjs imports tensorflow_decision_forests, whose welcome banner does
        # `import IPython` (not installed) whenever stdout is not a terminal; this turns it off.
        os.environ.setdefault("TFDF_DISABLE_WELCOME_MESSAGE", "1")
        from tensorflowjs.write_weights import write_weights

        manifest = write_weights([weights], str(out_dir), write_manifest=False)
    else:
        manifest = []
    model_json = {
        "format": "layers-model",
        "generatedBy": f"keras v{keras.__version__}",
        "convertedBy": "deploykit convert.tfjs_layers",
        "modelTopology": {"keras_version": keras.__version__, "backend": "tensorflow",
                          "model_config": model_config},
        "weightsManifest": manifest,
    }
    (out_dir / MODEL_FILE).write_text(json.dumps(model_json, separators=(",", ":")), encoding="utf-8")
    files = [MODEL_FILE] + [path for group in manifest for path in group["paths"]]
    return {"files": files, "notes": notes}
