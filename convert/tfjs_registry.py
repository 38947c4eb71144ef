"""What TFJS 4.22's tfjs-layers registers, so a skip reason can say truthfully who lacks a layer.

``TFJS_LAYERS`` lists the layer class names ``serialization.registerClass`` registers in
``@tensorflow/tfjs-layers`` 4.22 (read from ``web/node_modules/@tensorflow/tfjs-layers/dist/layers``).
A Keras class outside it is a layer TFJS cannot load at all; a class inside it that the kit's writer does
not translate is the writer's gap, and the reason says so. ``CANNOT_LOAD`` holds the registered layers
that ``tf.loadLayersModel`` still cannot rebuild from a model.json, with the reason measured in the
source. Nothing here imports anything.
"""

from __future__ import annotations

__all__ = ["TFJS_LAYERS", "CANNOT_LOAD", "missing_layer_reason"]

TFJS_LAYERS: frozenset[str] = frozenset({
    "Activation", "Add", "AlphaDropout", "Average", "AveragePooling1D", "AveragePooling2D",
    "AveragePooling3D", "BatchNormalization", "Bidirectional", "CategoryEncoding", "CenterCrop",
    "Concatenate", "Conv1D", "Conv2D", "Conv2DTranspose", "Conv3D", "Conv3DTranspose", "ConvLSTM2D",
    "Cropping2D", "Dense", "DepthwiseConv2D", "Dot", "Dropout", "ELU", "EinsumDense", "Embedding",
    "Flatten", "GRU", "GaussianDropout", "GaussianNoise", "GlobalAveragePooling1D",
    "GlobalAveragePooling2D", "GlobalMaxPooling1D", "GlobalMaxPooling2D", "LSTM", "LayerNormalization",
    "LeakyReLU", "Masking", "MaxPooling1D", "MaxPooling2D", "MaxPooling3D", "Maximum", "Minimum",
    "MultiHeadAttention", "Multiply", "PReLU", "Permute", "RNN", "RandomHeight", "RandomWidth", "ReLU",
    "RepeatVector", "Rescaling", "Reshape", "Resizing", "SeparableConv2D", "SimpleRNN", "Softmax",
    "SpatialDropout1D", "ThresholdedReLU", "TimeDistributed", "UpSampling2D", "ZeroPadding2D",
})

# Registered, but not loadable from a layers model.json (the reason, after "<Class> ('<name>'): ").
CANNOT_LOAD: dict[str, str] = {
    "MultiHeadAttention": "TFJS 4.22's MultiHeadAttention takes its value tensor as a call keyword argument, "
                          "and tf.loadLayersModel passes an inbound node's keyword arguments as plain JSON, "
                          "never as tensors",
}


def missing_layer_reason(class_name: str, name: str) -> str:
    """Why a Keras layer class the writer has no translator for is not written (one clause, true)."""
    if class_name in CANNOT_LOAD:
        return f"{class_name} ({name!r}): {CANNOT_LOAD[class_name]}"
    if class_name in TFJS_LAYERS:
        return (f"{class_name} ({name!r}): TFJS 4.22 has this layer, but the kit's writer does not "
                "translate it yet")
    return f"{class_name} ({name!r}): TFJS 4.22 has no such layer"
