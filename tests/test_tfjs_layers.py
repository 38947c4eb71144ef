"""convert.tfjs_layers: the layers models it writes load in real TFJS 4.22 and match Keras.

Real parts only: each model is written to disk, served over a loopback HTTP server, loaded with
``tf.loadLayersModel`` in headless Chromium (Playwright; the browser verify drives, ``find_chromium``) from the
project's own ``web/node_modules/@tensorflow/tfjs/dist/tf.min.js``, and run on the cpu backend.
Outputs are compared with Keras ``model.predict`` at the float32 tolerance of the architecture:
max |y - ref| / max(|ref|, 1e-2 * max|ref|) <= 1e-5, per output.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import pathlib
import shutil
import threading
from typing import Any, Callable, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest

from tests.helpers import LazyModule

keras = LazyModule("keras")  # imported by the first test that builds a model, not at collection
sync_api = pytest.importorskip("playwright.sync_api")

from convert.parity.browser import CHROMIUM_ARGS as WEBGL_ARGS  # noqa: E402 - webgl on SwiftShader, as the engine runs it
from convert.parity.browser import find_chromium  # noqa: E402
from convert.tfjs_layers import write_layers_model  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
TF_MIN_JS = ROOT / "web" / "node_modules" / "@tensorflow" / "tfjs" / "dist" / "tf.min.js"
HARNESS = pathlib.Path(__file__).resolve().parent / "tfjs_layers_harness" / "index.html"
CHROMIUM = find_chromium()  # the one verify drives; None: Playwright's own browser
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MAX_REL = 1e-5

needs_browser = [
    pytest.mark.browser,
    pytest.mark.skipif(not TF_MIN_JS.is_file(), reason="run `npm ci` in web/ first (tf.min.js missing)"),
]


# --------------------------------------------------------------------------- models under test


def _randomize_biases(model: Any, seed: int) -> Any:
    """Give biases and BatchNormalization statistics non-trivial values (defaults are 0/1)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        for var in layer.weights:
            name = var.path.rsplit("/", 1)[-1]
            if name in ("bias", "beta", "moving_mean"):
                var.assign(rng.normal(0, 0.5, var.shape).astype("float32"))
            elif name in ("gamma", "moving_variance"):
                var.assign(rng.uniform(0.5, 2.0, var.shape).astype("float32"))
    return model


def _boston_rows(n: int, seed: int) -> np.ndarray:
    """Rows of (rm, tax, age) in the data's ranges, starting with the course's [6, 250, 66.5]."""
    rng = np.random.default_rng(seed)
    rows = np.stack([rng.uniform(3.5, 8.8, n), rng.uniform(187, 711, n), rng.uniform(2.9, 100, n)], 1)
    rows[0] = [6.0, 250.0, 66.5]
    return rows.astype("float32")


def build_boston_linear() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([keras.Input((3,), name="features"), keras.layers.Dense(1)])
    model.layers[0].kernel.assign(np.array([[8.1], [-0.021], [-0.03]], "float32"))
    model.layers[0].bias.assign(np.array([-20.5], "float32"))
    return model, [_boston_rows(6, 1)]


def build_boston_mlp() -> tuple[Any, list[np.ndarray]]:
    norm = keras.layers.Normalization(name="normalization")
    norm.adapt(_boston_rows(400, 2))
    inp = keras.Input((3,), name="features")
    x = keras.layers.Dense(16, activation="relu")(norm(inp))
    model = keras.Model(inp, keras.layers.Dense(1)(x), name="boston_mlp")
    return _randomize_biases(model, 3), [_boston_rows(6, 4)]


def normalization_variants() -> tuple[Any, list[np.ndarray]]:
    inp = keras.Input((3,), name="x")
    x = keras.layers.Normalization(axis=None, mean=5.0, variance=4.0)(inp)
    x = keras.layers.Dense(2)(x)
    x = keras.layers.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0], invert=True)(x)
    y = keras.layers.Normalization(mean=[0.5, -1.0, 3.0], variance=[2.0, 0.25, 0.0])(inp)
    model = keras.Model(inp, [x, y])
    return _randomize_biases(model, 5), [np.random.default_rng(6).normal(4, 3, (5, 3)).astype("float32")]


def small_cnn() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(6, 3, padding="same", activation="elu"),
        keras.layers.AveragePooling2D(3, strides=2, padding="same"),
        keras.layers.Conv2D(5, 1),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ])
    return _randomize_biases(model, 7), [np.random.default_rng(8).random((4, 8, 8, 1), "float32")]


def flatten_reshape_cnn() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([
        keras.Input((64,)),
        keras.layers.Reshape((8, 8, 1)),
        keras.layers.Conv2D(3, 3, strides=2, activation="tanh"),
        keras.layers.MaxPooling2D(2, padding="same"),
        keras.layers.Flatten(),
        keras.layers.Dense(2),
    ])
    return _randomize_biases(model, 9), [np.random.default_rng(10).random((3, 64), "float32")]


def two_inputs_two_outputs() -> tuple[Any, list[np.ndarray]]:
    a = keras.Input((4,), name="a")
    b = keras.Input((3,), name="b")
    x = keras.layers.Concatenate()([keras.layers.Dense(5, activation="sigmoid")(a), keras.layers.Dense(2)(b)])
    x = keras.layers.Dense(8, activation="tanh")(x)
    price = keras.layers.Dense(1, name="price")(x)
    logits = keras.layers.Dense(3)(keras.layers.Activation("relu")(x))
    kind = keras.layers.Softmax(name="kind")(logits)
    model = keras.Model([a, b], [price, kind])
    rng = np.random.default_rng(11)
    return _randomize_biases(model, 12), [rng.normal(0, 1, (5, 4)).astype("float32"),
                                          rng.normal(0, 2, (5, 3)).astype("float32")]


def embedding_lstm() -> tuple[Any, list[np.ndarray]]:
    tokens = keras.Input((7,), dtype="int32", name="tokens")
    x = keras.layers.Embedding(20, 8, mask_zero=True)(tokens)
    x = keras.layers.GRU(6, reset_after=False, return_sequences=True)(x)
    x = keras.layers.LSTM(5)(x)
    model = keras.Model(tokens, keras.layers.Dense(1, activation="sigmoid")(x))
    ids = np.random.default_rng(13).integers(1, 20, (4, 7)).astype("int32")
    ids[1, 5:] = 0  # padded tails exercise the mask
    ids[2, 2:] = 0
    return _randomize_biases(model, 14), [ids]


def bn_dropout_classifier() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(16),
        keras.layers.BatchNormalization(),
        keras.layers.Activation("relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(4, activation="softmax"),
    ])
    return _randomize_biases(model, 15), [np.random.default_rng(16).normal(0, 1, (6, 5)).astype("float32")]


ZOO = ["linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "log_softmax", "elu", "selu",
       "softplus", "softsign", "silu", "mish"]


def activation_zoo() -> tuple[Any, list[np.ndarray]]:
    """One output per activation, so each is judged against its own scale."""
    inp = keras.Input((4,))
    heads = [keras.layers.Dense(3, activation=name, name=f"act_{name}")(inp) for name in ZOO]
    model = keras.Model(inp, heads)
    return _randomize_biases(model, 17), [np.random.default_rng(18).normal(0, 3, (8, 4)).astype("float32")]


def sequential_masked_rnns() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([
        keras.Input((6,), dtype="int32"),
        keras.layers.Embedding(12, 5, mask_zero=True),
        keras.layers.SimpleRNN(4, return_sequences=True),
        keras.layers.GRU(3, reset_after=False, go_backwards=True),
        keras.layers.Dense(2),
    ])
    ids = np.random.default_rng(19).integers(1, 12, (4, 6)).astype("int32")
    ids[0, 3:] = 0
    ids[3, 1:] = 0
    return _randomize_biases(model, 20), [ids]


def misc_functional() -> tuple[Any, list[np.ndarray]]:
    """Conv1D/pool1D, LSTM return_state, merges, a shared layer, ReLU/LeakyReLU, GlobalMaxPooling2D."""
    seq = keras.Input((10, 2), name="seq")
    img = keras.Input((6, 6, 2), name="img")
    x = keras.layers.Conv1D(4, 3, padding="same", activation="relu")(seq)
    x = keras.layers.MaxPooling1D(2)(x)
    x = keras.layers.AveragePooling1D(2, padding="same")(x)
    out, h, c = keras.layers.LSTM(3, return_state=True, return_sequences=True)(x)
    pooled = keras.layers.GlobalAveragePooling1D()(out)
    peak = keras.layers.GlobalMaxPooling1D()(out)
    shared = keras.layers.Dense(3, name="shared")
    a, b = shared(h), shared(c)
    merged = [keras.layers.Add()([a, b, pooled]), keras.layers.Multiply()([a, b]),
              keras.layers.Average()([a, peak]), keras.layers.Maximum()([a, b]), keras.layers.Minimum()([a, b])]
    g = keras.layers.Conv2D(3, 2, dilation_rate=2)(img)
    g = keras.layers.GlobalMaxPooling2D()(g)
    y = keras.layers.Concatenate()(merged + [g])
    y = keras.layers.LeakyReLU(negative_slope=0.1)(keras.layers.Dense(6)(y))
    y = keras.layers.ReLU(max_value=2.5)(y)
    model = keras.Model([seq, img], [y, keras.layers.Dense(2)(c)])
    rng = np.random.default_rng(21)
    return _randomize_biases(model, 22), [rng.normal(0, 1, (3, 10, 2)).astype("float32"),
                                          rng.normal(0, 1, (3, 6, 6, 2)).astype("float32")]


def built_sequential() -> tuple[Any, list[np.ndarray]]:
    model = keras.Sequential([keras.layers.Dense(4, activation="tanh"), keras.layers.Dense(1)])
    model.build((None, 3))
    return _randomize_biases(model, 23), [_boston_rows(4, 24)]


def mobile_parts_cnn() -> tuple[Any, list[np.ndarray]]:
    """ZeroPadding2D (asymmetric), DepthwiseConv2D (multiplier 2), SeparableConv2D, Rescaling, ReLU6."""
    model = keras.Sequential([
        keras.Input((9, 9, 3)),
        keras.layers.Rescaling(1 / 255.0, offset=-0.5),
        keras.layers.ZeroPadding2D(((0, 1), (1, 2))),
        keras.layers.Conv2D(4, 3, strides=2),
        keras.layers.ReLU(6.0),
        keras.layers.DepthwiseConv2D(3, padding="same", depth_multiplier=2, activation="relu"),
        keras.layers.BatchNormalization(),
        keras.layers.SeparableConv2D(5, 3, padding="same", activation="tanh"),
        keras.layers.DepthwiseConv2D(2, strides=2, use_bias=False),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3),
    ])
    return _randomize_biases(model, 26), [np.random.default_rng(27).uniform(0, 255, (4, 9, 9, 3)).astype("float32")]


def transpose_decoder() -> tuple[Any, list[np.ndarray]]:
    """Conv2DTranspose with 'same' and 'valid' padding and strides: an image out (rank 4)."""
    model = keras.Sequential([
        keras.Input((5, 5, 2)),
        keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu"),
        keras.layers.Conv2DTranspose(3, 2, strides=(1, 2), padding="valid", activation="sigmoid"),
        keras.layers.Conv2DTranspose(2, 3, use_bias=False, activation="sigmoid"),  # outputs away from 0
    ])
    return _randomize_biases(model, 28), [np.random.default_rng(29).normal(0, 1, (3, 5, 5, 2)).astype("float32")]


def prelu_elu_layernorm() -> tuple[Any, list[np.ndarray]]:
    """PReLU (per unit, and shared over the time axis), ELU, LayerNormalization (last axis, and two axes)."""
    seq = keras.Input((4, 6), name="seq")
    x = keras.layers.Dense(6)(seq)
    x = keras.layers.PReLU(shared_axes=[1], alpha_initializer=keras.initializers.RandomUniform(-0.5, 0.5))(x)
    x = keras.layers.LayerNormalization(epsilon=1e-5)(x)
    x = keras.layers.LayerNormalization(axis=[1, 2], center=False)(x)
    y = keras.layers.Flatten()(x)
    y = keras.layers.PReLU(alpha_initializer=keras.initializers.RandomUniform(0.0, 0.6))(keras.layers.Dense(8)(y))
    y = keras.layers.ELU()(keras.layers.Dense(5)(y))
    model = keras.Model(seq, [keras.layers.LayerNormalization(scale=False)(y), x])
    return _randomize_biases(model, 30), [np.random.default_rng(31).normal(0, 2, (5, 4, 6)).astype("float32")]


def wrapped_recurrent() -> tuple[Any, list[np.ndarray]]:
    """Bidirectional (LSTM concat, GRU sum, SimpleRNN with sequences), TimeDistributed(Dense) and
    TimeDistributed(Conv1D) on a sequence of sequences, causal dilated Conv1D."""
    seq = keras.Input((7, 3), name="seq")
    x = keras.layers.TimeDistributed(keras.layers.Dense(5, activation="tanh"))(seq)
    x = keras.layers.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu")(x)
    x = keras.layers.Bidirectional(keras.layers.SimpleRNN(3, return_sequences=True))(x)
    a = keras.layers.Bidirectional(keras.layers.LSTM(4))(x)
    b = keras.layers.Bidirectional(keras.layers.GRU(3, reset_after=False), merge_mode="sum")(x)
    per_step = keras.layers.TimeDistributed(keras.layers.Dense(2))(x)
    grid = keras.Input((3, 6, 2), name="grid")
    g = keras.layers.TimeDistributed(keras.layers.Conv1D(2, 2, activation="relu"))(grid)
    model = keras.Model([seq, grid], [keras.layers.Concatenate()([a, b]), per_step, g])
    rng = np.random.default_rng(32)
    return _randomize_biases(model, 33), [rng.normal(0, 1, (4, 7, 3)).astype("float32"),
                                          rng.normal(0, 1, (4, 3, 6, 2)).astype("float32")]


def upsampling() -> tuple[Any, list[np.ndarray]]:
    """UpSampling2D (nearest; size 2 and (2, 3)) between convolutions, and one on channels_first data."""
    img = keras.Input((5, 4, 2), name="img")
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu")(img)
    x = keras.layers.UpSampling2D(size=(2, 3))(x)
    x = keras.layers.Conv2D(2, 2, activation="tanh")(x)
    x = keras.layers.UpSampling2D()(x)
    planes = keras.Input((2, 3, 4), name="planes")
    y = keras.layers.UpSampling2D(size=3, data_format="channels_first")(planes)
    model = keras.Model([img, planes], [x, y])
    rng = np.random.default_rng(34)
    return _randomize_biases(model, 35), [rng.normal(0, 1, (3, 5, 4, 2)).astype("float32"),
                                          rng.normal(0, 1, (3, 2, 3, 4)).astype("float32")]


BOSTON_CSV = ROOT / "convert" / "data" / "boston.csv"


def _boston_data() -> np.ndarray:
    """Every row of the project's Boston data, columns (rm, tax, age)."""
    header = BOSTON_CSV.read_text().splitlines()[0].split(",")
    table = np.loadtxt(BOSTON_CSV, delimiter=",", skiprows=1, dtype="float64")
    return table[:, [header.index(c) for c in ("rm", "tax", "age")]].astype("float32")


def boston_mlp_keras_file() -> tuple[Any, list[np.ndarray]]:
    """The MLP adapted on the real data, saved to .keras and loaded back with safe_mode, all 506 rows."""
    import tempfile

    rows = _boston_data()
    norm = keras.layers.Normalization(name="normalization")
    norm.adapt(rows)
    inp = keras.Input((3,), name="features")
    x = keras.layers.Dense(32, activation="relu")(norm(inp))
    x = keras.layers.Dense(16, activation="relu")(x)
    model = _randomize_biases(keras.Model(inp, keras.layers.Dense(1, name="medv")(x)), 25)
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "m.keras"
        model.save(path)
        loaded = keras.saving.load_model(path, safe_mode=True)
    return loaded, [rows]


MODELS: dict[str, Callable[[], tuple[Any, list[np.ndarray]]]] = {
    "boston_linear": build_boston_linear,
    "boston_mlp": build_boston_mlp,
    "boston_mlp_keras_file": boston_mlp_keras_file,
    "normalization_variants": normalization_variants,
    "small_cnn": small_cnn,
    "flatten_reshape_cnn": flatten_reshape_cnn,
    "two_inputs_two_outputs": two_inputs_two_outputs,
    "embedding_gru_lstm": embedding_lstm,
    "bn_dropout_classifier": bn_dropout_classifier,
    "activation_zoo": activation_zoo,
    "sequential_masked_rnns": sequential_masked_rnns,
    "misc_functional": misc_functional,
    "built_sequential": built_sequential,
    "mobile_parts_cnn": mobile_parts_cnn,
    "transpose_decoder": transpose_decoder,
    "prelu_elu_layernorm": prelu_elu_layernorm,
    "wrapped_recurrent": wrapped_recurrent,
    "upsampling": upsampling,
}


# --------------------------------------------------------------------------- real server + browser


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[pathlib.Path, str]]:
    """A loopback HTTP server for a folder holding the harness page, tf.min.js and the models."""
    root = tmp_path_factory.mktemp("tfjs_layers_site")
    shutil.copy(HARNESS, root / "index.html")
    shutil.copy(TF_MIN_JS, root / "tf.min.js")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    """One Playwright for the module (the sync API allows only one at a time)."""
    with sync_api.sync_playwright() as pw:
        yield pw


def _harness_tab(pw: Any, base: str, args: list[str]) -> Iterator[Any]:
    browser = pw.chromium.launch(executable_path=CHROMIUM, args=args)
    try:
        tab = browser.new_page()
        tab.goto(f"{base}/index.html")
        tab.wait_for_function("window.harnessReady === true", timeout=30_000)
        yield tab
    finally:
        browser.close()


@pytest.fixture(scope="module")
def page(site: tuple[pathlib.Path, str], playwright: Any) -> Iterator[Any]:
    """One headless Chromium for the module, on the harness page."""
    yield from _harness_tab(playwright, site[1], CHROMIUM_ARGS)


def _max_rel(ref: np.ndarray, got: np.ndarray) -> float:
    ref = np.asarray(ref, np.float64)
    got = np.asarray(got, np.float64).reshape(ref.shape)
    scale = np.maximum(np.abs(ref), 1e-2 * np.max(np.abs(ref)))
    return float(np.max(np.abs(got - ref) / scale))


def _keras_and_tfjs(model: Any, inputs: list[np.ndarray], page: Any, url: str, backend: str) -> tuple[list, dict]:
    """Keras's outputs and the harness page's answer for the layers model at ``url`` on ``backend``."""
    refs = model.predict(inputs if len(inputs) > 1 else inputs[0], verbose=0)
    refs = refs if isinstance(refs, list) else [refs]
    payload = [{"data": x.ravel().tolist(), "shape": list(x.shape),
                "dtype": "int32" if x.dtype.kind in "iu" else "float32"} for x in inputs]
    return refs, page.evaluate("([url, xs, backend]) => window.runLayersModel(url, xs, backend)", [url, payload, backend])


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_browser) for n in MODELS])
def test_layers_model_loads_in_tfjs_and_matches_keras(
        name: str, site: tuple[pathlib.Path, str], page: Any) -> None:
    keras.utils.set_random_seed(0)
    model, inputs = MODELS[name]()
    root, base = site
    written = write_layers_model(model, root / name)
    assert written["files"][0] == "model.json"
    assert all((root / name / f).is_file() for f in written["files"])

    refs, result = _keras_and_tfjs(model, inputs, page, f"{base}/{name}/model.json", "cpu")
    assert result["version"] == "4.22.0" and result["backend"] == "cpu"
    outs = result["outputs"]
    assert len(outs) == len(refs)
    errors = []
    for ref, out in zip(refs, outs):
        assert list(out["shape"]) == list(ref.shape)
        errors.append(_max_rel(ref, np.array(out["data"])))
    print(f"{name}: max relative error per output {['%.2e' % e for e in errors]}")
    assert max(errors) <= MAX_REL, f"{name}: {errors}"


# Normalization over 3 channels feeding a Dense (webgl packs 2x2 blocks: odd channel counts leave padding
# lanes; with epsilon=0 these two gave NaN), plus a real BatchNormalization and a two-input model as controls,
# and UpSampling2D by 3 (the shader's float32 i * (1/3) must still floor to the right source pixel).
WEBGL_MODELS = ["boston_mlp_keras_file", "normalization_variants", "two_inputs_two_outputs", "bn_dropout_classifier",
                "upsampling"]


@pytest.fixture(scope="module")
def webgl_page(site: tuple[pathlib.Path, str], playwright: Any) -> Iterator[Any]:
    """One headless Chromium with WebGL (SwiftShader), on the harness page."""
    yield from _harness_tab(playwright, site[1], WEBGL_ARGS)


@pytest.mark.parametrize("name", [pytest.param(n, marks=needs_browser) for n in WEBGL_MODELS])
def test_layers_model_matches_keras_on_webgl(name: str, site: tuple[pathlib.Path, str], webgl_page: Any) -> None:
    """Regression: Normalization written with epsilon=0 gave NaN on webgl (NaN in the packed padding lanes)."""
    keras.utils.set_random_seed(0)
    model, inputs = MODELS[name]()
    root, base = site
    write_layers_model(model, root / f"webgl-{name}")
    refs, result = _keras_and_tfjs(model, inputs, webgl_page, f"{base}/webgl-{name}/model.json", "webgl")
    assert result["backend"] == "webgl"
    if not result["float32"]:
        pytest.skip("this WebGL renders half floats only (WEBGL_RENDER_FLOAT32_ENABLED is false)")
    errors = [_max_rel(ref, np.array(out["data"])) for ref, out in zip(refs, result["outputs"])]
    print(f"{name} on webgl: max relative error per output {['%.2e' % e for e in errors]}")
    assert len(errors) == len(refs) and max(errors) <= MAX_REL, f"{name}: {errors}"


def test_normalization_is_written_as_batch_normalization(tmp_path: pathlib.Path) -> None:
    model, _ = build_boston_mlp()
    written = write_layers_model(model, tmp_path)
    topology = json.loads((tmp_path / "model.json").read_text())["modelTopology"]["model_config"]
    classes = [layer["class_name"] for layer in topology["config"]["layers"]]
    assert classes == ["InputLayer", "BatchNormalization", "Dense", "Dense"]
    assert written["notes"] == ["Normalization 'normalization' written as BatchNormalization "
                                "(moving_mean=mean, moving_variance=max(variance, 1e-14), epsilon=1e-30)"]
    bn = json.loads((tmp_path / "model.json").read_text())["modelTopology"]["model_config"]["config"]["layers"][1]
    assert bn["config"]["epsilon"] > 0  # 0 computes NaN on webgl (see test_layers_model_matches_keras_on_webgl)


@pytest.mark.parametrize("name", [pytest.param("bilinear", marks=needs_browser)])
def test_bilinear_upsampling_is_refused_because_tfjs_computes_another_function(
        name: str, site: tuple[pathlib.Path, str], page: Any) -> None:
    """The measurement behind the refusal: the same layers model with ``interpolation: bilinear`` (written as
    nearest, then edited) loads in TFJS 4.22 and answers, but not what Keras 3's bilinear UpSampling2D computes."""
    img = keras.Input((4, 4, 1))
    model = keras.Model(img, keras.layers.UpSampling2D(interpolation="bilinear", name="up")(img))
    x = np.arange(2 * 16, dtype="float32").reshape(2, 4, 4, 1)
    nearest = keras.Model(img, keras.layers.UpSampling2D(name="up")(img))
    root, base = site
    write_layers_model(nearest, root / name)
    path = root / name / "model.json"
    text = path.read_text()
    assert text.count('"interpolation":"nearest"') == 1
    path.write_text(text.replace('"interpolation":"nearest"', '"interpolation":"bilinear"'))
    refs, result = _keras_and_tfjs(model, [x], page, f"{base}/{name}/model.json", "cpu")
    error = _max_rel(refs[0], np.array(result["outputs"][0]["data"]))
    print(f"bilinear UpSampling2D, TFJS 4.22 vs Keras 3: max relative error {error:.3g}")
    assert error > 0.05  # 1.0 measured (relative to the output scale): far over MAX_REL
