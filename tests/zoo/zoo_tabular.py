"""Zoo models over flat feature vectors: MLP variants (LayerNorm, GELU, PReLU/ELU), multi-input and
multi-output, and the two SavedModel sources (the course's Keras 3 ``model.export``, a Keras 2 ``model.save``).

Every builder trains for a few epochs on seeded generated data (or the bundled Boston CSV) and returns
``(model_path, data_path, target)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo_common import Built, keras_seeded, save_csv

BOSTON_CSV = Path(__file__).resolve().parents[2] / "convert" / "data" / "boston.csv"


def _tabular(seed: int, rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Six features on different scales and a smooth nonlinear target."""
    rng = np.random.default_rng(seed)
    x = np.c_[rng.normal(0, 1, rows), rng.normal(50, 10, rows), rng.uniform(0, 1, rows),
              rng.normal(-3, 0.5, rows), rng.uniform(-20, 20, rows), rng.normal(0, 3, rows)].astype("float32")
    y = (np.sin(x[:, 0]) + 0.05 * (x[:, 1] - 50) + x[:, 2] * x[:, 3] + 0.02 * x[:, 4]).astype("float32")
    return x, y


def _mlp(out: Path, name: str, seed: int, hidden) -> Built:
    """Train ``Input(6) -> hidden(...) -> Dense(1)`` on the shared tabular task; CSV data."""
    keras = keras_seeded(seed)
    x, y = _tabular(seed)
    norm = keras.layers.Normalization()
    norm.adapt(x)
    inp = keras.Input((6,), name="features")
    h = hidden(keras, norm(inp))
    model = keras.Model(inp, keras.layers.Dense(1, name="y")(h), name=name)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=3, batch_size=32, verbose=0)
    model.save(out / f"{name}.keras")
    return out / f"{name}.keras", save_csv(out / f"{name}.csv", x, y, "y"), "y"


def layernorm_mlp(out: Path) -> Built:
    """Dense -> LayerNormalization -> ReLU, twice (the int8 case the issue measured at 48%)."""
    def hidden(keras, h):
        for width in (32, 16):
            h = keras.layers.Dense(width)(h)
            h = keras.layers.LayerNormalization()(h)
            h = keras.layers.Activation("relu")(h)
        return h
    return _mlp(out, "layernorm_mlp", 10, hidden)


def gelu_exact_mlp(out: Path) -> Built:
    """Dense layers with Keras's default GELU (exact: erf)."""
    def hidden(keras, h):
        h = keras.layers.Dense(32, activation="gelu", name="gelu_1")(h)  # named: messages quote the layer
        return keras.layers.Dense(16, activation="gelu", name="gelu_2")(h)
    return _mlp(out, "gelu_exact_mlp", 11, hidden)


def gelu_tanh_mlp(out: Path) -> Built:
    """GELU's tanh approximation, written with ``keras.ops.gelu(approximate=True)`` in a functional model."""
    def hidden(keras, h):
        h = keras.ops.gelu(keras.layers.Dense(32)(h), approximate=True)
        return keras.ops.gelu(keras.layers.Dense(16)(h), approximate=True)
    return _mlp(out, "gelu_tanh_mlp", 12, hidden)


def prelu_elu_mlp(out: Path) -> Built:
    """PReLU (learned slope per unit) and ELU layers."""
    def hidden(keras, h):
        h = keras.layers.PReLU()(keras.layers.Dense(32)(h))
        return keras.layers.ELU()(keras.layers.Dense(16)(h))
    return _mlp(out, "prelu_elu_mlp", 13, hidden)


def three_inputs(out: Path) -> Built:
    """Three float inputs of different widths, concatenated after their own Dense; one regression output.
    Two names are not identifiers (``a-left``, ``B.mid``): the SavedModel and the TFJS graph rename them
    (``a_left``, ``B_mid`` / ``b_mid``), and every runtime must still be fed by the manifest's names."""
    keras = keras_seeded(14)
    rng = np.random.default_rng(14)
    a, b, c = (rng.normal(0, 1, (500, 2)).astype("float32"), rng.uniform(0, 10, (500, 5)).astype("float32"),
               rng.normal(100, 20, (500, 1)).astype("float32"))
    y = (a[:, 0] - a[:, 1] + 0.1 * b.sum(1) + 0.01 * (c[:, 0] - 100)).astype("float32")
    ins = [keras.Input((2,), name="a-left"), keras.Input((5,), name="B.mid"), keras.Input((1,), name="c")]
    scaled = [ins[0], keras.layers.Rescaling(0.1)(ins[1]), keras.layers.Normalization(mean=100.0, variance=400.0)(ins[2])]
    h = keras.layers.Concatenate()([keras.layers.Dense(8, activation="relu")(t) for t in scaled])
    model = keras.Model(ins, keras.layers.Dense(1, name="y")(keras.layers.Dense(16, activation="relu")(h)), name="three_inputs")
    model.compile("adam", "mse")
    model.fit([a, b, c], y, epochs=3, batch_size=32, verbose=0)
    model.save(out / "three_inputs.keras")
    np.savez(out / "three.npz", **{"a-left": a, "B.mid": b, "c": c, "y": y})
    return out / "three_inputs.keras", out / "three.npz", "y"


def three_heads(out: Path) -> Built:
    """One input, three outputs: a regression, a 5-class softmax and a sigmoid."""
    keras = keras_seeded(15)
    x, y = _tabular(15)
    cls = np.digitize(y, np.quantile(y, [0.2, 0.4, 0.6, 0.8])).astype("int32")
    flag = (x[:, 0] > 0).astype("float32")
    norm = keras.layers.Normalization()
    norm.adapt(x)
    inp = keras.Input((6,), name="features")
    h = keras.layers.Dense(32, activation="relu")(norm(inp))
    h = keras.layers.Dense(16, activation="relu")(h)
    model = keras.Model(inp, [keras.layers.Dense(1, name="value")(h),
                              keras.layers.Dense(5, activation="softmax", name="bucket")(h),
                              keras.layers.Dense(1, activation="sigmoid", name="flag")(h)], name="three_heads")
    model.compile("adam", ["mse", "sparse_categorical_crossentropy", "binary_crossentropy"])
    model.fit(x, [y, cls, flag], epochs=3, batch_size=32, verbose=0)
    model.save(out / "three_heads.keras")
    np.savez(out / "heads.npz", features=x)
    return out / "three_heads.keras", out / "heads.npz", ""


def course_export(out: Path, trained: Path) -> Built:
    """The MLOps course's SavedModel: ``deploykit train --model linear`` (``trained``), then ``model.export``."""
    import keras

    model = keras.models.load_model(trained, compile=False)
    model.export(str(out / "course_export"), format="tf_saved_model", verbose=False)
    return out / "course_export", BOSTON_CSV, "medv"


def keras2_saved_model(out: Path) -> Built:
    """A Keras 2 (tf_keras) MLP with Normalization, saved with ``model.save(folder)``: the TF 2.x SavedModel."""
    import tensorflow as tf
    import tf_keras

    tf_keras.utils.set_random_seed(16)
    table = np.genfromtxt(BOSTON_CSV, delimiter=",", names=True)
    x = np.c_[table["rm"], table["tax"], table["age"]].astype("float32")
    norm = tf_keras.layers.Normalization()
    norm.adapt(x)
    model = tf_keras.Sequential([tf_keras.Input((3,), name="features"), norm,
                                 tf_keras.layers.Dense(16, activation="relu"), tf_keras.layers.Dense(1)],
                                name="keras2_mlp")
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, table["medv"].astype("float32"), epochs=3, batch_size=32, verbose=0)
    model.save(str(out / "keras2_saved_model"), save_format="tf")
    assert tf.saved_model.contains_saved_model(str(out / "keras2_saved_model"))
    return out / "keras2_saved_model", BOSTON_CSV, "medv"


BUILDERS = {
    "layernorm_mlp": layernorm_mlp,
    "gelu_exact_mlp": gelu_exact_mlp,
    "gelu_tanh_mlp": gelu_tanh_mlp,
    "prelu_elu_mlp": prelu_elu_mlp,
    "three_inputs": three_inputs,
    "three_heads": three_heads,
    "keras2_saved_model": keras2_saved_model,
}
