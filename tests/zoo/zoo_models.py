"""The model zoo (issues 3 and 10), built and trained (a few epochs) by code at test time; no binaries in git.

Each builder writes ``<dir>/<name>.keras`` (or a SavedModel folder) and its DATA (CSV for tabular models,
.npz otherwise) and returns ``(model_path, data_path, target)``. Digits come from scikit-learn's bundled 8x8
set (no download); the rest is generated with fixed seeds. The Boston models come from ``deploykit train``
(tests/conftest.py fixtures). The families live in zoo_tabular.py, zoo_images.py and zoo_sequences.py;
this module keeps the zoo of issue 3 and the registry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

import zoo_images
import zoo_sequences
import zoo_tabular
from zoo_common import Built, keras_seeded


def _keras():
    return keras_seeded(0)


def digits_cnn(out: Path) -> Built:
    """A small CNN on scikit-learn's 8x8 digits (softmax over 10 classes)."""
    from sklearn.datasets import load_digits

    keras = _keras()
    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")[..., None]
    y = digits.target.astype("int32")
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="image"),
        keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(10, activation="softmax"),
    ], name="digits_cnn")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=3, batch_size=64, verbose=0)
    model.save(out / "digits_cnn.keras")
    np.savez(out / "digits.npz", image=x, label=y)
    return out / "digits_cnn.keras", out / "digits.npz", "label"


def two_in_two_out(out: Path) -> Built:
    """A functional model: two inputs, two outputs (a regression and a 3-class softmax). The input names are
    not identifiers (``a-left``, ``B.mid``): the SavedModel and the TFJS graph rename them (``a_left``,
    ``B_mid`` / ``b_mid``; the page was fed by the manifest's names and failed), every runtime must take them."""
    keras = _keras()
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, (600, 4)).astype("float32")
    b = rng.normal(5, 2, (600, 3)).astype("float32")
    price = (a @ [1.0, -2.0, 0.5, 0.0] + 0.3 * b[:, 0]).astype("float32")[:, None]
    kind = (np.argmax(np.c_[a[:, :2], b[:, :1] - 5], axis=1)).astype("int32")
    ia, ib = keras.Input((4,), name="a-left"), keras.Input((3,), name="B.mid")
    h = keras.layers.Concatenate()([keras.layers.Dense(16, activation="relu")(ia),
                                    keras.layers.Dense(8, activation="relu")(keras.layers.Normalization(mean=5.0, variance=4.0)(ib))])
    h = keras.layers.Dense(16, activation="tanh")(h)
    model = keras.Model([ia, ib], [keras.layers.Dense(1, name="price")(h),
                                   keras.layers.Dense(3, activation="softmax", name="kind")(h)], name="two_in_two_out")
    model.compile("adam", ["mse", "sparse_categorical_crossentropy"])
    model.fit([a, b], [price, kind], epochs=5, batch_size=32, verbose=0)
    model.save(out / "two_in_two_out.keras")
    np.savez(out / "two.npz", **{"a-left": a, "B.mid": b})
    return out / "two_in_two_out.keras", out / "two.npz", ""


def sequence_lstm(out: Path) -> Built:
    """Embedding + LSTM over integer tokens (sentiment-like: does token 7 appear more than token 3?)."""
    keras = _keras()
    rng = np.random.default_rng(2)
    tokens = rng.integers(1, 30, (800, 12)).astype("int32")
    label = ((tokens == 7).sum(1) > (tokens == 3).sum(1)).astype("int32")
    inp = keras.Input((12,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(30, 8)(inp)
    x = keras.layers.LSTM(8)(x)
    model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x), name="sequence_lstm")
    model.compile("adam", "binary_crossentropy")
    model.fit(tokens, label, epochs=2, batch_size=64, verbose=0)
    model.save(out / "sequence_lstm.keras")
    np.savez(out / "tokens.npz", tokens=tokens, label=label)
    return out / "sequence_lstm.keras", out / "tokens.npz", "label"


def bn_dropout_classifier(out: Path) -> Built:
    """Dense + BatchNormalization + Dropout + softmax over 4 classes, on tabular generated data (CSV)."""
    keras = _keras()
    rng = np.random.default_rng(3)
    x = np.c_[rng.normal(10, 3, 700), rng.uniform(0, 200, 700), rng.normal(0, 1, 700), rng.uniform(-1, 1, 700)]
    y = (np.digitize(x[:, 0] + 0.05 * x[:, 1], [15, 20, 25])).astype(int)
    model = keras.Sequential([
        keras.Input((4,), name="features"),
        keras.layers.Dense(32),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(4, activation="softmax"),
    ], name="bn_dropout")
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x.astype("float32"), y, epochs=5, batch_size=32, verbose=0)
    model.save(out / "bn_dropout.keras")
    path = out / "classes.csv"
    lines = ["f1,f2,f3,f4,cls"] + [",".join(f"{v:.6g}" for v in row) + f",{c}" for row, c in zip(x, y)]
    path.write_text("\n".join(lines) + "\n")
    return out / "bn_dropout.keras", path, "cls"


BUILDERS: dict[str, Callable[[Path], Built]] = {
    "digits_cnn": digits_cnn,
    "two_in_two_out": two_in_two_out,
    "sequence_lstm": sequence_lstm,
    "bn_dropout": bn_dropout_classifier,
    **zoo_tabular.BUILDERS,
    **zoo_images.BUILDERS,
    **zoo_sequences.BUILDERS,
}

# Models built from a model another fixture trained (``tests/conftest.py``): name -> (builder, fixture).
FROM_FIXTURE: dict[str, tuple[Callable[[Path, Path], Built], str]] = {
    "course_export": (zoo_tabular.course_export, "boston_linear"),
}
# Built by ``deploykit train`` in tests/conftest.py and converted there; the zoo copies their bundles.
BOSTON = ("boston_linear", "boston_mlp")

FAMILY: dict[str, str] = {
    **{name: "tabular" for name in (*BOSTON, *FROM_FIXTURE, "two_in_two_out", "bn_dropout", *zoo_tabular.BUILDERS)},
    **{name: "image" for name in ("digits_cnn", *zoo_images.BUILDERS)},
    **{name: "sequence" for name in ("sequence_lstm", *zoo_sequences.BUILDERS)},
}
APPLICATIONS = ("mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "densenet121")
ALL: list[str] = [*BOSTON, *FROM_FIXTURE, *(n for n in BUILDERS if n not in APPLICATIONS), *APPLICATIONS]  # slowest last
# `make test` runs these (the first six are the zoo of issue 3); `make zoo` runs all (marker zoo_full).
FAST = ("boston_linear", "boston_mlp", "digits_cnn", "two_in_two_out", "sequence_lstm", "bn_dropout",
        "course_export", "layernorm_mlp", "gelu_exact_mlp", "rescaling_resnet", "conv1d_regressor", "series_attention")
SET: dict[str, str] = {name: "fast" if name in FAST else "full" for name in ALL}
assert set(FAMILY) == set(ALL) and set(FAST) <= set(ALL)
