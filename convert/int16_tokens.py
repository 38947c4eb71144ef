"""int16x8 for models with integer token inputs: the Embedding lookups as plain gathers.

Keras 3's Embedding looks up ``ops.take(embeddings, ids)``, which on TensorFlow first maps negative ids
(``where(ids < 0, ids + input_dim, ids)``): LESS, ADD and SELECT_V2 on the int32 token tensor. TF's 16x8
quantizer (the old ``calibrate_and_quantize``; TF uses no other for int16 activations) tries to quantize
those int32 ops and stops: "Max and min for dynamic tensors should be recorded during calibration: Failed
for tensor serving_default_tokens:0". int8 does not meet it because it goes through the MLIR quantizer
(``convert.tflite_int8.quantize_calibrated``), which leaves integer ops alone; that route cannot be reused for
int16x8: its int16 tensors get zero point -1, which the TFLite kernels refuse (measured on an
Embedding -> GlobalAveragePooling1D -> Dense model: "MEAN ... zero_point != 0 (-1 != 0)").

So the int16x8 artifact is converted from a copy of the model whose Embeddings gather the ids directly.
For every id the runners accept (``edge.inputs.check_vocabulary``: integers from 0 to ``input_dim - 1``,
recorded in the manifest) the two lookups are the same rows, bit for bit; a negative id, which Keras would
have wrapped around, is refused with HTTP 422 before it reaches the model. Models whose tokens also feed
other integer arithmetic (a position index from ``cumsum(ones_like(tokens))``) still cannot be quantized
to 16x8, and say so with the converter's reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _embedding_class() -> type:
    import keras

    class GatherEmbedding(keras.layers.Embedding):
        """An Embedding whose lookup is ``tf.gather(embeddings, ids)`` (no negative-id wrap-around)."""

        def call(self, inputs: Any) -> Any:
            import tensorflow as tf

            if keras.backend.standardize_dtype(inputs.dtype) not in ("int32", "int64"):
                inputs = keras.ops.cast(inputs, "int32")
            return keras.ops.cast(tf.gather(self.embeddings, inputs), self.compute_dtype)

    return GatherEmbedding


def _plain(layer: Any) -> bool:
    """An Embedding this module may replace: Keras's own class, not quantized, no LoRA."""
    import keras

    return (type(layer) is keras.layers.Embedding and getattr(layer, "quantization_mode", None) is None
            and not getattr(layer, "lora_enabled", False))


def gather_copy(model: Any) -> Any | None:
    """A copy of ``model`` (same weights) whose top-level Embeddings gather directly; None without any."""
    import keras

    if model is None or not any(_plain(layer) for layer in model.layers):
        return None
    gather = _embedding_class()

    def clone(layer: Any) -> Any:
        if _plain(layer):
            return gather.from_config(layer.get_config())
        return layer.__class__.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


def int16x8_source(model: Any, default: Path, work: Path) -> Path:
    """The SavedModel to convert int16x8 from: an export of ``gather_copy(model)`` into ``work`` when the
    Keras ``model`` (the one ``default`` was exported from) has Embeddings, else ``default``."""
    copy = gather_copy(model)
    if copy is None:
        return default
    from convert.reference import export

    target = work / "saved_model_int16x8_gather"
    if not target.exists():
        export(copy, target)
    return target
