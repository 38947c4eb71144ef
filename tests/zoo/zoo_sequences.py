"""Zoo models over sequences: recurrent layers (SimpleRNN, GRU, LSTM, Bidirectional, TimeDistributed),
Conv1D regressors, a Transformer block (MultiHeadAttention + LayerNormalization) and Embedding text
classifiers, one of them with a second, numeric input.

Float sequences are noisy sums of sines (the target is a smooth function of them); token sequences count
"positive" and "negative" tokens, so a model trained for two epochs already has non-trivial outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zoo_common import Built, keras_seeded

STEPS, CHANNELS, VOCAB, LENGTH = 16, 3, 40, 20


def waves(seed: int, rows: int = 480) -> tuple[np.ndarray, np.ndarray]:
    """``rows`` series of STEPS x CHANNELS and a target: the first channel's mean frequency-ish feature."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)[None, :, None]
    freq = rng.uniform(0.1, 0.6, (rows, 1, CHANNELS))
    phase = rng.uniform(0, 2 * np.pi, (rows, 1, CHANNELS))
    x = np.sin(freq * t + phase) + rng.normal(0, 0.1, (rows, STEPS, CHANNELS))
    y = (freq[:, 0, 0] * 3 + 0.5 * x[:, -1, 1]).astype("float32")
    return x.astype("float32"), y


def tokens(seed: int, rows: int = 600) -> tuple[np.ndarray, np.ndarray]:
    """Integer token rows (0 = padding at the end) and a 3-class label: more 5s, more 9s, or neither."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, (rows, LENGTH))
    lengths = rng.integers(LENGTH // 2, LENGTH + 1, rows)
    ids[np.arange(LENGTH)[None, :] >= lengths[:, None]] = 0
    diff = (ids == 5).sum(1) - (ids == 9).sum(1)
    return ids.astype("int32"), np.where(diff > 0, 0, np.where(diff < 0, 1, 2)).astype("int32")


def _regressor(out: Path, model, seed: int, epochs: int = 2) -> Built:
    x, y = waves(seed)
    model.compile("adam", "mse")
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    model.save(out / f"{model.name}.keras")
    np.savez(out / f"{model.name}.npz", series=x, y=y)
    return out / f"{model.name}.keras", out / f"{model.name}.npz", "y"


def _series(keras):
    return keras.Input((STEPS, CHANNELS), name="series")


def simple_rnn(out: Path) -> Built:
    """SimpleRNN(16) -> Dense(1)."""
    keras = keras_seeded(40)
    inp = _series(keras)
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.SimpleRNN(16)(inp)), name="simple_rnn")
    return _regressor(out, model, 40)


def gru(out: Path) -> Built:
    """GRU(16) (Keras's default reset_after=True) -> Dense(1)."""
    keras = keras_seeded(41)
    inp = _series(keras)
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GRU(16)(inp)), name="gru")
    return _regressor(out, model, 41)


def gru_reset_before(out: Path) -> Built:
    """GRU(16, reset_after=False) (the Keras 2 / TFJS form) in a Bidirectional wrapper -> Dense(1)."""
    keras = keras_seeded(53)
    inp = _series(keras)
    h = keras.layers.Bidirectional(keras.layers.GRU(12, reset_after=False), merge_mode="sum")(inp)
    return _regressor(out, keras.Model(inp, keras.layers.Dense(1)(h), name="gru_reset_before"), 53)


def stacked_lstm(out: Path) -> Built:
    """LSTM(16, return_sequences) -> LSTM(8) -> Dense(1), over float series."""
    keras = keras_seeded(42)
    inp = _series(keras)
    h = keras.layers.LSTM(8)(keras.layers.LSTM(16, return_sequences=True)(inp))
    return _regressor(out, keras.Model(inp, keras.layers.Dense(1)(h), name="stacked_lstm"), 42)


def bidirectional_lstm(out: Path) -> Built:
    """Bidirectional(LSTM(8)) -> Dense(1)."""
    keras = keras_seeded(43)
    inp = _series(keras)
    h = keras.layers.Bidirectional(keras.layers.LSTM(8))(inp)
    return _regressor(out, keras.Model(inp, keras.layers.Dense(1)(h), name="bidirectional_lstm"), 43)


def time_distributed(out: Path) -> Built:
    """TimeDistributed(Dense) in, LSTM(return_sequences), TimeDistributed(Dense(1)) out: one value per step."""
    keras = keras_seeded(44)
    x, _ = waves(44)
    y = np.cumsum(x[:, :, :1], axis=1) / 4
    inp = _series(keras)
    h = keras.layers.TimeDistributed(keras.layers.Dense(8, activation="tanh"))(inp)
    h = keras.layers.LSTM(8, return_sequences=True)(h)
    model = keras.Model(inp, keras.layers.TimeDistributed(keras.layers.Dense(1))(h), name="time_distributed")
    model.compile("adam", "mse")
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    model.save(out / "time_distributed.keras")
    np.savez(out / "time_distributed.npz", series=x)
    return out / "time_distributed.keras", out / "time_distributed.npz", ""


def conv1d_regressor(out: Path) -> Built:
    """Conv1D(16, 3) -> MaxPooling1D -> Conv1D(16, 3) -> GlobalAveragePooling1D -> Dense(1)."""
    keras = keras_seeded(45)
    model = keras.Sequential([
        _series(keras),
        keras.layers.Conv1D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling1D(2),
        keras.layers.Conv1D(16, 3, activation="relu"),
        keras.layers.GlobalAveragePooling1D(),
        keras.layers.Dense(1),
    ], name="conv1d_regressor")
    return _regressor(out, model, 45, epochs=3)


def dilated_conv1d(out: Path) -> Built:
    """Causal, dilated Conv1D stack (a small TCN) with a residual Add, flattened into Dense(1)."""
    keras = keras_seeded(46)
    inp = _series(keras)
    h = keras.layers.Conv1D(12, 2, padding="causal", activation="relu")(inp)
    r = keras.layers.Conv1D(12, 2, padding="causal", dilation_rate=2, activation="relu")(h)
    h = keras.layers.Add()([h, keras.layers.Conv1D(12, 2, padding="causal", dilation_rate=4)(r)])
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(h)), name="dilated_conv1d")
    return _regressor(out, model, 46)


def _text(out: Path, model, seed: int, extra: dict[str, np.ndarray] | None = None) -> Built:
    ids, label = tokens(seed)
    feeds = {"tokens": ids, **(extra or {})}
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(feeds if extra else ids, label, epochs=2, batch_size=32, verbose=0)
    model.save(out / f"{model.name}.keras")
    np.savez(out / f"{model.name}.npz", label=label, **feeds)
    return out / f"{model.name}.keras", out / f"{model.name}.npz", "label"


def _token_input(keras):
    return keras.Input((LENGTH,), dtype="int32", name="tokens")


def embedding_bag(out: Path) -> Built:
    """Embedding -> GlobalAveragePooling1D -> Dense softmax (fastText-like)."""
    keras = keras_seeded(47)
    inp = _token_input(keras)
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 16)(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h), name="embedding_bag")
    return _text(out, model, 47)


def text_cnn(out: Path) -> Built:
    """Embedding -> Conv1D -> GlobalMaxPooling1D -> Dropout -> Dense softmax."""
    keras = keras_seeded(48)
    inp = _token_input(keras)
    h = keras.layers.Conv1D(16, 3, activation="relu")(keras.layers.Embedding(VOCAB, 16)(inp))
    h = keras.layers.Dropout(0.2)(keras.layers.GlobalMaxPooling1D()(h))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h), name="text_cnn")
    return _text(out, model, 48)


def text_gru(out: Path) -> Built:
    """Embedding(mask_zero) -> GRU: a masked recurrent text classifier."""
    keras = keras_seeded(49)
    inp = _token_input(keras)
    h = keras.layers.GRU(12)(keras.layers.Embedding(VOCAB, 8, mask_zero=True)(inp))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h), name="text_gru")
    return _text(out, model, 49)


def transformer_block(out: Path) -> Built:
    """Token + position embeddings, MultiHeadAttention with residual + LayerNormalization, a GELU
    feed-forward with residual + LayerNormalization, mean pooling, softmax."""
    keras = keras_seeded(50)
    inp = _token_input(keras)
    h = keras.layers.Embedding(VOCAB, 16)(inp)
    position = keras.layers.Embedding(LENGTH, 16)(keras.ops.cumsum(keras.ops.ones_like(inp), axis=1) - 1)
    h = keras.layers.Add()([h, position])
    attended = keras.layers.MultiHeadAttention(num_heads=2, key_dim=8)(h, h)
    h = keras.layers.LayerNormalization()(keras.layers.Add()([h, attended]))
    ff = keras.layers.Dense(16)(keras.layers.Dense(32, activation="gelu")(h))
    h = keras.layers.LayerNormalization()(keras.layers.Add()([h, ff]))
    h = keras.layers.GlobalAveragePooling1D()(h)
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(h), name="transformer_block")
    return _text(out, model, 50)


def series_attention(out: Path) -> Built:
    """MultiHeadAttention + LayerNormalization over float series (no Embedding), regression."""
    keras = keras_seeded(51)
    inp = _series(keras)
    h = keras.layers.Dense(16)(inp)
    h = keras.layers.LayerNormalization()(keras.layers.Add()([h, keras.layers.MultiHeadAttention(2, 8)(h, h)]))
    model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.GlobalAveragePooling1D()(h)), name="series_attention")
    return _regressor(out, model, 51)


def text_and_numbers(out: Path) -> Built:
    """Two inputs of two dtypes: int32 tokens (Embedding + pooling) and two float features."""
    keras = keras_seeded(52)
    rng = np.random.default_rng(52)
    numbers = rng.normal(0, 1, (600, 2)).astype("float32")
    tok = _token_input(keras)
    num = keras.Input((2,), name="numbers")
    h = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(VOCAB, 8)(tok))
    h = keras.layers.Dense(16, activation="relu")(keras.layers.Concatenate()([h, num]))
    model = keras.Model([tok, num], keras.layers.Dense(3, activation="softmax")(h), name="text_and_numbers")
    return _text(out, model, 52, extra={"numbers": numbers})


BUILDERS = {
    "simple_rnn": simple_rnn,
    "gru": gru,
    "gru_reset_before": gru_reset_before,
    "stacked_lstm": stacked_lstm,
    "bidirectional_lstm": bidirectional_lstm,
    "time_distributed": time_distributed,
    "conv1d_regressor": conv1d_regressor,
    "dilated_conv1d": dilated_conv1d,
    "embedding_bag": embedding_bag,
    "text_cnn": text_cnn,
    "text_gru": text_gru,
    "transformer_block": transformer_block,
    "series_attention": series_attention,
    "text_and_numbers": text_and_numbers,
}
