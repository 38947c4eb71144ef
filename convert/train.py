"""The built-in reference models: the course's linear Boston model and a Boston MLP that is good.

Both take one float32 input tensor named ``features`` of shape ``(None, 3)``: rm, tax, age in that order,
and predict medv. Training is deterministic for a given seed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.data import BOSTON_CSV, BOSTON_FEATURES, BOSTON_TARGET, read_csv
from convert.errors import DeployKitError

MODELS = ("linear", "mlp")
HOLDOUT_FRACTION = 0.2


@dataclass
class TrainResult:
    """What ``train`` produced: the Keras model and its hold-out mean absolute error (medv, $1000s)."""

    model: object
    kind: str
    holdout_mae: float
    epochs: int


def boston_split(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Boston rows split into (x_train, y_train, x_holdout, y_holdout), shuffled with ``seed``."""
    table = read_csv(BOSTON_CSV)
    x = np.stack([table.column(name) for name in BOSTON_FEATURES], axis=1).astype(np.float32)
    y = table.column(BOSTON_TARGET).astype(np.float32)[:, None]
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(round(len(x) * (1 - HOLDOUT_FRACTION)))
    train, hold = order[:cut], order[cut:]
    return x[train], y[train], x[hold], y[hold]


def build(kind: str, x_train: np.ndarray):
    """Build (uncompiled) one of the reference models. ``x_train`` adapts the MLP's Normalization.

    Raises:
        DeployKitError: unknown model kind.
    """
    import keras

    inputs = keras.Input(shape=(x_train.shape[1],), name="features", dtype="float32")
    if kind == "linear":
        # The course's model: one Dense unit on the raw features.
        outputs = keras.layers.Dense(1, name="medv")(inputs)
    elif kind == "mlp":
        norm = keras.layers.Normalization(axis=-1, name="normalization")
        norm.adapt(x_train)
        hidden = norm(inputs)
        hidden = keras.layers.Dense(32, activation="relu", name="hidden_1")(hidden)
        hidden = keras.layers.Dense(16, activation="relu", name="hidden_2")(hidden)
        outputs = keras.layers.Dense(1, name="medv")(hidden)
    else:
        raise DeployKitError(f"unknown model {kind!r}; choose one of: {', '.join(MODELS)}")
    return keras.Model(inputs, outputs, name=f"boston_{kind}")


def train(kind: str = "linear", seed: int = 42) -> TrainResult:
    """Train a reference model on the built-in Boston data, deterministically for ``seed``.

    The linear model follows the course: ``Dense(1)``, MSE loss, EarlyStopping, validation_split 0.33,
    at most 100 epochs. The MLP normalises its inputs (adapted on the training rows) and trains longer.

    Raises:
        DeployKitError: unknown model kind.
    """
    import keras
    import tensorflow as tf

    if kind not in MODELS:
        raise DeployKitError(f"unknown model {kind!r}; choose one of: {', '.join(MODELS)}")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    x_train, y_train, x_hold, y_hold = boston_split(seed)
    model = build(kind, x_train)
    if kind == "linear":
        optimizer, epochs, patience = keras.optimizers.Adam(learning_rate=0.05), 100, 5
    else:
        optimizer, epochs, patience = keras.optimizers.Adam(learning_rate=0.01), 300, 25
    model.compile(optimizer=optimizer, loss="mse", metrics=["mae"])
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = model.fit(
        x_train, y_train, validation_split=0.33, epochs=epochs, batch_size=32,
        callbacks=[stop], verbose=0, shuffle=True,
    )
    pred = model.predict(x_hold, verbose=0)
    mae = float(np.mean(np.abs(pred - y_hold)))
    return TrainResult(model=model, kind=kind, holdout_mae=mae, epochs=len(history.history["loss"]))


def save(model, out: Path) -> None:
    """Save a model as a Keras 3 ``.keras`` file, atomically (temporary file, then rename).

    Raises:
        DeployKitError: the path does not end in .keras or cannot be written.
    """
    out = Path(out)
    if out.suffix != ".keras":
        raise DeployKitError(f"--out must end in .keras (got {str(out)!r}); Keras 3 saves models as .keras files")
    if not out.parent.is_dir():
        raise DeployKitError(f"cannot write {str(out)!r}: folder {str(out.parent)!r} does not exist; create it first")
    if os.path.islink(out):
        raise DeployKitError(f"cannot write {str(out)!r}: it is a symbolic link, and deploykit does not write through links; "
                             "remove it or choose another --out")
    # Keras writes FILE.keras by name: into a private folder made for it (mkdtemp, 0700), never a predictable path
    try:
        private = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
    except OSError as exc:
        raise DeployKitError(f"cannot write {str(out)!r} ({exc.strerror or exc}); choose a writable path") from None
    try:
        tmp = private / out.name
        model.save(tmp)
        os.replace(tmp, out)
    except OSError as exc:
        raise DeployKitError(f"cannot write {str(out)!r} ({exc.strerror or exc}); choose a writable path") from None
    finally:
        shutil.rmtree(private, ignore_errors=True)
