"""Zoo models over images: small CNNs (residual Adds after Rescaling, separable/depthwise convolutions,
an encoder-decoder with an image output) and keras.applications at 32x32 with ``weights=None``.

Images are generated: each class is a blurred blob at its own place and colour, plus noise, so a model
trained for one or two epochs already separates them (outputs that are not constant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from zoo_common import Built, keras_seeded


def blobs(seed: int, rows: int, size: int, classes: int, scale: float = 255.0) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` images (size x size x 3, values in [0, scale]) of ``classes`` kinds of blob, and their labels."""
    rng = np.random.default_rng(seed)
    label = rng.integers(0, classes, rows).astype("int32")
    yy, xx = np.mgrid[0:size, 0:size] / size
    centres = rng.uniform(0.2, 0.8, (classes, 2))
    colours = rng.uniform(0.2, 1.0, (classes, 3))
    blob = np.exp(-((yy[None] - centres[label, 0, None, None]) ** 2 + (xx[None] - centres[label, 1, None, None]) ** 2) / 0.02)
    image = blob[..., None] * colours[label, None, None, :] + rng.uniform(0, 0.3, (rows, size, size, 3))
    return (np.clip(image, 0, 1) * scale).astype("float32"), label


def seeded(seed: int, rows: int, size: int, classes: int, scale: float = 255.0) -> tuple[Any, np.ndarray, np.ndarray]:
    """Keras seeded with ``seed`` (``zoo_common.keras_seeded``), then :func:`blobs` with the same seed:
    ``(keras, images, labels)``."""
    keras = keras_seeded(seed)
    return (keras, *blobs(seed, rows, size, classes, scale=scale))


def settle_batch_norm(model, x: np.ndarray) -> None:
    """Set every BatchNormalization's moving statistics to those of ``x`` (one training-mode pass with
    momentum 0, then the momentum restored): a briefly trained network otherwise keeps its initial
    statistics, and its inference outputs are constant."""
    layers = [layer for layer in model._flatten_layers() if layer.__class__.__name__ == "BatchNormalization"]
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.momentum = 0.0
    model(x, training=True)
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def _classifier(out: Path, model, x: np.ndarray, y: np.ndarray, epochs: int = 2, settle: bool = False) -> Built:
    model.compile("adam", "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    if settle:
        settle_batch_norm(model, x[:64])
    path = out / f"{model.name}.keras"
    model.save(path)
    np.savez(out / f"{model.name}.npz", image=x, label=y)
    return path, out / f"{model.name}.npz", "label"


def rescaling_resnet(out: Path) -> Built:
    """Rescaling(1/255) then two residual blocks (Conv-BN-ReLU-Conv + Add) on 24x24 RGB, 4 classes."""
    keras, x, y = seeded(20, 320, 24, 4)
    inp = keras.Input((24, 24, 3), name="image")
    h = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(keras.layers.Rescaling(1 / 255.0)(inp))
    for _ in range(2):
        r = keras.layers.Conv2D(16, 3, padding="same")(h)
        r = keras.layers.Activation("relu")(keras.layers.BatchNormalization()(r))
        r = keras.layers.Conv2D(16, 3, padding="same")(r)
        h = keras.layers.Activation("relu")(keras.layers.Add()([h, r]))
    h = keras.layers.GlobalAveragePooling2D()(keras.layers.MaxPooling2D(2)(h))
    model = keras.Model(inp, keras.layers.Dense(4, activation="softmax")(h), name="rescaling_resnet")
    return _classifier(out, model, x, y)


def separable_cnn(out: Path) -> Built:
    """ZeroPadding2D, DepthwiseConv2D, SeparableConv2D and ReLU6 (MobileNet's parts, hand-sized)."""
    keras, x, y = seeded(21, 320, 24, 3, scale=1.0)
    model = keras.Sequential([
        keras.Input((24, 24, 3), name="image"),
        keras.layers.ZeroPadding2D(1),
        keras.layers.Conv2D(8, 3, strides=2),
        keras.layers.ReLU(6.0),
        keras.layers.DepthwiseConv2D(3, padding="same"),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(6.0),
        keras.layers.SeparableConv2D(16, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ], name="separable_cnn")
    return _classifier(out, model, x, y)


def conv_autoencoder(out: Path) -> Built:
    """Conv2D down, Conv2DTranspose up: an image in, an image out (a rank-4 output)."""
    keras, x, _ = seeded(22, 256, 16, 3, scale=1.0)
    model = keras.Sequential([
        keras.Input((16, 16, 3), name="image"),
        keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2D(8, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(8, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(3, 3, strides=2, padding="same", activation="sigmoid"),
    ], name="conv_autoencoder")
    model.compile("adam", "mse")
    model.fit(x, x, epochs=3, batch_size=32, verbose=0)
    model.save(out / "conv_autoencoder.keras")
    np.savez(out / "autoencoder.npz", image=x)
    return out / "conv_autoencoder.keras", out / "autoencoder.npz", ""


def _application(out: Path, name: str, seed: int, make, scale: float, **kwargs) -> Built:
    """A keras.applications model at 32x32, ``weights=None``, 5 classes, trained for one epoch (4 steps, no XLA),
    its BatchNormalization statistics then settled on 64 images."""
    keras, x, y = seeded(seed, 128, 32, 5, scale=scale)
    inp = keras.Input((32, 32, 3), name="image")
    net = make(input_tensor=inp, weights=None, classes=5, **kwargs)
    model = keras.Model(inp, net.output, name=name)
    return _classifier(out, model, x, y, epochs=1, settle=True)


def mobilenet_v2(out: Path) -> Built:
    """MobileNetV2, alpha 0.35 (inputs in [-1, 1] as its preprocess_input gives)."""
    import keras

    return _application(out, "mobilenet_v2", 30, keras.applications.MobileNetV2, 1.0, alpha=0.35)


def mobilenet_v3_small(out: Path) -> Built:
    """MobileNetV3Small with its built-in Rescaling (inputs 0-255)."""
    import keras

    return _application(out, "mobilenet_v3_small", 31, keras.applications.MobileNetV3Small, 255.0)


def efficientnet_b0(out: Path) -> Built:
    """EfficientNetB0 with its built-in Rescaling + Normalization (inputs 0-255)."""
    import keras

    return _application(out, "efficientnet_b0", 32, keras.applications.EfficientNetB0, 255.0)


def densenet121(out: Path) -> Built:
    """DenseNet121 (inputs already scaled to [0, 1])."""
    import keras

    return _application(out, "densenet121", 33, keras.applications.DenseNet121, 1.0)


BUILDERS = {
    "rescaling_resnet": rescaling_resnet,
    "separable_cnn": separable_cnn,
    "conv_autoencoder": conv_autoencoder,
    "mobilenet_v2": mobilenet_v2,
    "mobilenet_v3_small": mobilenet_v3_small,
    "efficientnet_b0": efficientnet_b0,
    "densenet121": densenet121,
}
