"""A small image classifier for the image tests: Rescaling(1/255) + Conv2D + GlobalAveragePooling + Dense
softmax on 32x32 RGB, 4 classes (a colour each), with a labels file whose names include markup and
non-ASCII text (they must show as text), and test PNGs of other sizes (so the resize is exercised).

Run as a script (``python tests/image_model.py OUT``) it writes OUT/colours.keras, OUT/colours.npz
(``image``, ``label``), OUT/labels.txt and OUT/<class>.png; the session fixture ``image_bundle``
(tests/conftest.py) runs it in a subprocess and converts the model with the real CLI.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

LABELS = ["red", "green & co", "<b>blue</b>", "gelb ünïcode"]
COLOURS = np.array([[220, 30, 30], [30, 200, 40], [30, 40, 220], [230, 220, 30]], dtype=np.float64)
SIZE = 32


def picture(rng: np.random.Generator, label: int, height: int, width: int) -> np.ndarray:
    """uint8 [height, width, 3]: a noisy background with a square of the class's colour somewhere."""
    image = rng.uniform(0, 90, (height, width, 3))
    h, w = height // 2, width // 2
    y, x = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
    image[y:y + h, x:x + w] = COLOURS[label] + rng.uniform(-20, 20, (h, w, 3))
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def build(out: Path) -> None:
    import keras
    from PIL import Image

    keras.utils.set_random_seed(7)
    rng = np.random.default_rng(7)
    y = rng.integers(0, len(LABELS), 400).astype("int32")
    x = np.stack([picture(rng, int(c), SIZE, SIZE) for c in y]).astype("float32")
    inp = keras.Input((SIZE, SIZE, 3), name="image")
    h = keras.layers.Rescaling(1 / 255.0)(inp)
    h = keras.layers.Conv2D(8, 3, activation="relu")(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    model = keras.Model(inp, keras.layers.Dense(len(LABELS), activation="softmax", name="probs")(h), name="colours")
    model.compile(keras.optimizers.Adam(0.01), "sparse_categorical_crossentropy", jit_compile=False)
    model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    model.save(out / "colours.keras")
    np.savez(out / "colours.npz", image=x, label=y)
    (out / "labels.txt").write_text("\n".join(LABELS) + "\n", encoding="utf-8")
    for c in range(len(LABELS)):  # other sizes than the model's: 45x61, 46x62, ...
        Image.fromarray(picture(rng, c, 45 + c, 61 + c)).save(out / f"class{c}.png")


if __name__ == "__main__":
    build(Path(sys.argv[1]))
