"""Images on the Pi runner: ``edge.images`` (decode, resize, scale, top-k) and ``POST /v1/models/NAME:classify``
(image body and b64 JSON) plus ``{"b64": ...}`` in ``:predict``, on the real image classifier bundle
(tests/image_model.py, converted with --labels) served by a real ``deploykit-edge serve`` on loopback."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import math
from typing import Any, Iterator

import numpy as np
import pytest

from edge import images
from edge.inputs import InputError
from edge_helpers import Server

SPEC = images.ImageInput("image", 32, 32, 3, (0.0, 255.0))


def png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def test_same_size_at_0_255_is_the_pixels_themselves() -> None:
    a = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = images.to_tensor(png(a), SPEC)
    assert t.dtype == np.float32 and t.shape == (1, 32, 32, 3)
    assert np.array_equal(t[0], a.astype(np.float32))


def test_resize_is_bilinear_with_half_pixel_centres() -> None:
    # 2 columns -> 4: centres at -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1)
    row = np.array([[[0], [100]]], dtype=np.uint8)
    assert images.resize(row, 1, 4)[0, :, 0].tolist() == [0.0, 25.0, 75.0, 100.0]
    scaled = images.from_pixels(np.full((4, 4, 3), 255, np.uint8), images.ImageInput("x", 2, 2, 3, (-1.0, 1.0)))
    assert scaled.tolist() == np.ones((1, 2, 2, 3)).tolist()


def _reference(pixels: np.ndarray, spec: images.ImageInput) -> np.ndarray:
    """The steps of docs/architecture.md ("Class labels and image inputs") one output value at a time, in
    Python floats (IEEE doubles, as numpy's and JavaScript's): what the vectorised ``from_pixels`` must equal
    bit for bit."""
    h, w = pixels.shape[:2]
    low, high = spec.pixels  # type: ignore[misc]
    step = (high - low) / 255.0

    def axis(n_in: int, n_out: int, i: int) -> tuple[int, int, float]:
        s = min(max((i + 0.5) * (n_in / n_out) - 0.5, 0.0), float(n_in - 1))
        i0 = math.floor(s)
        return i0, min(i0 + 1, n_in - 1), s - i0

    def source(y: int, x: int, c: int) -> float:
        if spec.channels == 1:
            r, g, b = (float(v) for v in pixels[y, x, :3])
            return (0.299 * r + 0.587 * g) + 0.114 * b
        return float(pixels[y, x, c])

    out = np.zeros((1, spec.height, spec.width, spec.channels), np.float32)
    for oy in range(spec.height):
        y0, y1, fy = axis(h, spec.height, oy)
        for ox in range(spec.width):
            x0, x1, fx = axis(w, spec.width, ox)
            for c in range(spec.channels):
                if (h, w) == (spec.height, spec.width):
                    v = source(oy, ox, c)
                else:
                    top = source(y0, x0, c) * (1.0 - fx) + source(y0, x1, c) * fx
                    bottom = source(y1, x0, c) * (1.0 - fx) + source(y1, x1, c) * fx
                    v = top * (1.0 - fy) + bottom * fy
                out[0, oy, ox, c] = v if (low, step) == (0.0, 1.0) else low + v * step
    return out


@pytest.mark.parametrize("size, to, channels, pixels", [
    ((37, 53), (16, 12), 3, (0.0, 255.0)), ((9, 7), (20, 31), 3, (-1.0, 1.0)), ((40, 30), (40, 30), 3, (0.0, 1.0)),
    ((1, 1), (5, 3), 4, (0.0, 255.0)), ((23, 17), (8, 8), 1, (-0.5, 2.0)), ((5, 64), (3, 1), 3, (0.1, 0.7)),
])
def test_vectorised_resize_and_scale_equal_the_written_steps_bit_for_bit(size: tuple[int, int], to: tuple[int, int],
                                                                           channels: int, pixels: tuple) -> None:
    """Downscale, upscale, same size, one pixel, gray, odd ranges: the gathered, table-driven ``from_pixels``
    (and its tables cached per size) gives the bytes of the one-value-at-a-time reference; twice, so the
    cached tables are checked too."""
    rng = np.random.default_rng(sum(size) + sum(to))
    a = rng.integers(0, 256, (*size, 4 if channels == 4 else 3), dtype=np.uint8)
    spec = images.ImageInput("x", *to, channels, pixels)
    want = _reference(a, spec)
    for _ in range(2):
        got = images.from_pixels(a, spec)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert got.tobytes() == want.tobytes()


def test_load_summarises_the_image_from_its_data() -> None:
    """What the prediction log records instead of the pixels: the format Pillow found (not a Content-Type),
    the decoded size, the bytes and their sha256."""
    data = png(np.zeros((5, 7, 3), np.uint8))
    tensor, summary = images.load(data, images.ImageInput("x", 4, 4, 3, (0.0, 1.0)), summarise=True)
    assert tensor.shape == (1, 4, 4, 3)
    assert summary == {"image": "PNG", "width": 7, "height": 5, "bytes": len(data),
                       "sha256": hashlib.sha256(data).hexdigest()}
    assert images.load(data, images.ImageInput("x", 4, 4, 3, (0.0, 1.0)))[1] is None


def test_gray_and_rgba_channels() -> None:
    a = np.array([[[10, 20, 30]]], dtype=np.uint8)
    one = images.from_pixels(a, images.ImageInput("x", 1, 1, 1, (0.0, 255.0)))
    assert one.reshape(-1).tolist() == [np.float32((0.299 * 10 + 0.587 * 20) + 0.114 * 30)]
    rgba = np.array([[[10, 20, 30, 40]]], dtype=np.uint8)
    assert images.from_pixels(rgba, images.ImageInput("x", 1, 1, 4, (0.0, 255.0))).reshape(-1).tolist() == [10, 20, 30, 40]


@pytest.mark.parametrize("data, status, message", [
    (b"GIF89a....", 400, "the image is not a JPEG or PNG file"),
    (b"", 400, "the image is not a JPEG or PNG file"),
])
def test_not_an_image(data: bytes, status: int, message: str) -> None:
    with pytest.raises(InputError) as err:
        images.to_tensor(data, SPEC)
    assert (err.value.status, str(err.value)) == (status, message)


def test_truncated_png_is_400_naming_the_problem() -> None:
    data = png(np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(InputError) as err:
        images.to_tensor(data[: len(data) // 2], SPEC)
    assert err.value.status == 400 and str(err.value).startswith("the image could not be decoded (PNG): ")


def test_decompression_bomb_is_refused_from_the_header() -> None:
    bomb = png(np.zeros((5000, 5000), np.uint8))  # 25 megapixels in a few kilobytes
    assert len(bomb) < 100_000
    with pytest.raises(InputError) as err:
        images.to_tensor(bomb, SPEC)
    assert (err.value.status, str(err.value)) == (
        413, "the image is 5000x5000 = 25000000 pixels, over the limit of 24000000; send a smaller picture")


def test_unknown_pixel_range_is_refused_naming_the_flag() -> None:
    with pytest.raises(InputError) as err:
        images.to_tensor(png(np.zeros((8, 8, 3), np.uint8)), images.ImageInput("image", 8, 8, 3, None))
    assert str(err.value) == ("input 'image' is an image but the bundle does not say which pixel values the model "
                              "takes; re-convert with --image-scale LOW..HIGH (e.g. 0..1)")


def test_top_k_order_and_ties() -> None:
    assert images.top_k([0.1, 0.5, 0.5, 0.2], ["a", "b", "c", "d"], 3) == [
        {"index": 1, "label": "b", "score": 0.5}, {"index": 2, "label": "c", "score": 0.5},
        {"index": 3, "label": "d", "score": 0.2}]
    assert images.top_k([0.3, 0.7], None, 9) == [{"index": 1, "label": None, "score": 0.7},
                                                 {"index": 0, "label": None, "score": 0.3}]


def test_top_k_of_many_classes_is_the_stable_sort_s_prefix() -> None:
    """A few of many classes are found by a partition: the same list as the stable sort, ties (many, in
    integer scores) and NaN (the sort's path) included."""
    rng = np.random.default_rng(0)
    for trial in range(400):
        n, k = int(rng.integers(1, 1200)), int(rng.integers(1, 12))
        s = (rng.integers(0, 4, n) if trial % 2 else rng.random(n)).astype(np.float32)
        if trial % 5 == 0:  # NaN, up to more than k of them
            s[rng.integers(0, n, int(rng.integers(1, 16)))] = np.nan
        order = np.argsort(-s.astype(np.float64), kind="stable")[:k]
        assert [r["index"] for r in images.top_k(s, None, k)] == order.tolist(), (trial, n, k)


def _jpeg(array: np.ndarray, **options: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", **options)
    return buf.getvalue()


def _pillow_pixels(data: bytes, channels: int = 3) -> np.ndarray:
    """What Pillow's full path gives: ``Image.open``, ``load``, EXIF orientation, the mode (as ``_decode``)."""
    from PIL import Image, ImageOps

    im = Image.open(io.BytesIO(data))
    im.load()
    im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGBA" if channels == 4 else "RGB"), dtype=np.uint8)


def test_plain_jpeg_shortcut_gives_pillow_s_pixels_bit_for_bit() -> None:
    """``_decode`` runs libjpeg straight on a plain JPEG (``_plain_jpeg_size``); the pixels are those of
    Pillow's full path, for baseline, progressive, subsampled and odd-sized files, RGB and RGBA."""
    from PIL import Image

    rng = np.random.default_rng(3)
    cases = [((96, 96), {}), ((37, 53), {"quality": 70}), ((64, 48), {"progressive": True}),
             ((31, 17), {"subsampling": 0}), ((96, 96), {"subsampling": 2, "optimize": True}),
             ((50, 40), {"restart_marker_blocks": 1})]
    for (h, w), options in cases:
        data = _jpeg(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), **options)
        assert images._plain_jpeg_size(data, images.MAX_PIXELS) == (w, h), options
        for channels in (3, 4):
            pixels, found = images._decode(data, channels, images.MAX_PIXELS)
            assert found == "JPEG" and pixels.dtype == np.uint8
            assert np.array_equal(pixels, _pillow_pixels(data, channels)), (options, channels)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated: APP1, so Pillow's full path (which turns it)
    turned = _jpeg(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8), exif=exif.tobytes())
    gray = _jpeg(rng.integers(0, 256, (20, 30), dtype=np.uint8))
    for data in (turned, gray):
        assert images._plain_jpeg_size(data, images.MAX_PIXELS) is None
        assert np.array_equal(images.decode(data), _pillow_pixels(data))
    assert images.decode(turned).shape == (30, 20, 3)


def test_plain_jpeg_shortcut_keeps_the_full_path_s_refusals() -> None:
    """A truncated plain JPEG is refused with Pillow's full path's message; one over the pixel limit from
    its header, as before."""
    data = _jpeg(np.random.default_rng(4).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    with pytest.raises(InputError) as err:
        images.to_tensor(data[: len(data) // 2], SPEC)
    assert (err.value.status, str(err.value)) == (400, "the image could not be decoded (JPEG): image file is truncated "
                                                       "(140 bytes not processed)")
    assert images._plain_jpeg_size(data, 64 * 64 - 1) is None
    with pytest.raises(InputError) as err:
        images.decode(data, max_pixels=64 * 64 - 1)
    assert (err.value.status, str(err.value)) == (
        413, "the image is 64x64 = 4096 pixels, over the limit of 4095; send a smaller picture")


def test_classify_answer_text_is_json_bytes_of_the_answer() -> None:
    """``:classify``'s answer is written from cached texts (``edge.server.images._Model.answer``): the same
    bytes as ``json_bytes`` of the answer, with and without labels (quotes, non-ASCII), tiny and huge
    scores, several images; a score that is not finite is refused as ``json_bytes`` refuses it."""
    from types import SimpleNamespace

    from edge.server.images import _Model
    from edge.server.messages import json_bytes

    rng = np.random.default_rng(6)
    for labels in (None, ["cat", 'say "hi"', "caf\u00e9 \u2603", "back\\slash", "", "x" * 50]):
        manifest = {"inputs": [{"name": "image", "dtype": "float32", "shape": [None, 8, 8, 3],
                                "image": {"height": 8, "width": 8, "channels": 3, "pixels": [0.0, 1.0]}}],
                    "outputs": [{"key": "output_0", "shape": [None, 6], **({"labels": labels} if labels else {})}]}
        model = _Model(SimpleNamespace(manifest=manifest, name='m\u00f6del "1"'))
        for trial in range(50):
            scores = rng.random((int(rng.integers(1, 4)), 6)) * 10.0 ** float(rng.integers(-12, 20))
            tops = [images.top_k(row, labels, int(rng.integers(1, 7))) for row in scores]
            ids = [f"ab{i}" for i in range(len(tops))]
            want = json_bytes({"model": 'm\u00f6del "1"', "model_version": 3, "ids": ids,
                               "predictions": [{"top_k": t} for t in tops]})
            assert model.answer(3, ids, tops) == want, (labels, trial)
    bad = [[{"index": 0, "label": None, "score": float("nan")}]]
    with pytest.raises(ValueError):
        model.answer(1, ["a"], bad)


# ------------------------------------------------------------------ over HTTP, the real bundle


@pytest.fixture(scope="module")
def served(image_bundle: dict[str, Any]) -> Iterator[Server]:
    server = Server(image_bundle["bundle"], "--variant", "float32")
    yield server
    server.stop()


def classify(server: Server, body: bytes, ctype: str, query: str = "") -> tuple[int, Any]:
    status, _, data = server.request("POST", f"/v1/models/colours:classify{query}", body, {"Content-Type": ctype})
    return status, json.loads(data)


def test_manifest_has_labels_and_image_entry(image_bundle: dict[str, Any]) -> None:
    from image_model import LABELS

    m = json.loads((image_bundle["bundle"] / "manifest.json").read_text())
    assert m["outputs"][0]["labels"] == LABELS
    assert m["inputs"][0]["image"] == {"height": 32, "width": 32, "channels": 3, "pixels": [0.0, 255.0],
                                       "pixels_from": "Rescaling layer 'rescaling': the model takes raw pixels"}


def test_upload_and_b64_give_the_same_top_k_as_the_interpreter(served: Server, image_bundle: dict[str, Any]) -> None:
    from edge.runner import Predictor
    from image_model import LABELS

    predictor = Predictor(image_bundle["bundle"], "float32")
    for c, path in enumerate(image_bundle["pngs"]):
        data = path.read_bytes()
        expected = images.top_k(predictor.predict({"image": images.to_tensor(data, SPEC)})["output_0"][0], LABELS, 3)
        status, body = classify(served, data, "image/png", "?k=3")
        assert status == 200, body
        assert len(body.pop("ids")) == 1  # the prediction's id, for ground-truth feedback
        assert body == {"model": "colours", "model_version": 1, "predictions": [{"top_k": expected}]}
        assert body["predictions"][0]["top_k"][0]["label"] == LABELS[c]  # the model knows its colours
        b64 = base64.b64encode(data).decode()
        status, again = served.json("POST", "/v1/models/colours:classify?k=3", {"instances": [{"b64": b64}, {"image": {"b64": b64}}]})
        assert status == 200, again
        assert again["predictions"] == [{"top_k": expected}] * 2
        status, tfs = served.json("POST", "/v1/models/colours:predict", {"instances": [{"b64": b64}]})
        assert status == 200, tfs
        assert [r["index"] for r in images.top_k(tfs["predictions"][0], LABELS, 3)] == [r["index"] for r in expected]


def test_jpeg_upload(served: Server, image_bundle: dict[str, Any]) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.open(image_bundle["pngs"][2]).save(buf, "JPEG", quality=95)
    status, body = classify(served, buf.getvalue(), "image/jpeg")
    assert status == 200, body
    assert len(body["predictions"][0]["top_k"]) == 4  # default k 5, at most the 4 classes
    assert body["predictions"][0]["top_k"][0]["label"] == "<b>blue</b>"  # as data: JSON, not markup


@pytest.mark.parametrize("body, ctype, query, status, error", [
    (b"not an image", "image/png", "", 400, "the image is not a JPEG or PNG file"),
    (b"x", "text/plain", "", 415, "content type text/plain is not supported; send Content-Type: image/jpeg"),
    (b'{"instances": [{"b64": "%%%"}]}', "application/json", "", 400, "instance 1: input 'image': the b64 value is not base64"),
    (b'{"instances": [[1, 2]]}', "application/json", "", 422, 'instances must be images: {"b64": "<base64 of a JPEG or PNG>"}'),
    (b"", "image/png", "?k=0", 422, "k='0' is not a whole number from 1 to 1000"),
    # 5000 digits: int() raised ValueError over 4300 digits, answered 500; "²" passes str.isdigit, not int()
    (b"", "image/png", "?k=" + "9" * 5000, 422, "k='99999999999999999999' is not a whole number from 1 to 1000"),
    (b"", "image/png", "?k=%C2%B2", 422, "k='²' is not a whole number from 1 to 1000"),
    (b"", "image/png", "?k=1001", 422, "k='1001' is not a whole number from 1 to 1000"),
    (b"", "image/png", "?k=1e9", 422, "k='1e9' is not a whole number from 1 to 1000"),
    (b"", "image/png", "?k=-1", 422, "k='-1' is not a whole number from 1 to 1000"),
])
def test_classify_errors_are_json_naming_the_problem(served: Server, body: bytes, ctype: str, query: str,
                                                     status: int, error: str) -> None:
    got, answer = classify(served, body, ctype, query)
    assert (got, answer) == (status, {"success": False, "error": error})


def test_classify_k_with_leading_zeros_is_its_number(served: Server, image_bundle: dict[str, Any]) -> None:
    status, body = classify(served, image_bundle["pngs"][0].read_bytes(), "image/png", "?k=" + "0" * 5000 + "2")
    assert status == 200, body
    assert len(body["predictions"][0]["top_k"]) == 2


def test_classify_body_over_the_limit_is_413(served: Server) -> None:
    got, answer = classify(served, b"\x89PNG" + b"0" * (1024 * 1024), "image/png")
    assert got == 413 and answer["error"].endswith("is over the limit of 1048576 bytes")


def test_classify_on_a_tabular_model_is_422(module_server: Server) -> None:
    status, _, data = module_server.request("POST", "/v1/models/boston_mlp:classify", b"x", {"Content-Type": "image/png"})
    assert (status, json.loads(data)["error"]) == (
        422, "model 'boston_mlp' does not take one image (its inputs: ['features']); "
             "POST JSON to /v1/models/boston_mlp:predict")


def test_openapi_lists_classify_for_an_image_model_only(served: Server, module_server: Server) -> None:
    status, doc = served.json("GET", "/openapi.json")
    assert status == 200 and "/v1/models/colours:classify" in doc["paths"]
    assert set(doc["paths"]["/v1/models/colours:classify"]["post"]["requestBody"]["content"]) == {
        "image/jpeg", "image/png", "application/json"}
    status, doc = module_server.json("GET", "/openapi.json")
    assert status == 200 and not any(p.endswith(":classify") for p in doc["paths"])


def test_image_predictions_are_logged_with_a_summary_not_the_pixels(image_bundle: dict[str, Any], tmp_path: Any) -> None:
    """Upload, b64 :classify and b64 :predict each write a prediction-log row like any prediction's: the
    image's summary (the format found in the data: a PNG sent as image/jpeg is logged as PNG, the header is
    not trusted), the answer as JSON (top k, or the output row), variant, sha256, id, version."""
    from PIL import Image

    data = image_bundle["pngs"][1].read_bytes()
    jpeg_buf = io.BytesIO()
    Image.open(image_bundle["pngs"][1]).save(jpeg_buf, "JPEG", quality=90)
    b64 = base64.b64encode(jpeg_buf.getvalue()).decode()
    server = Server(image_bundle["bundle"], "--variant", "float32", log_dir=tmp_path)
    try:
        answers = []
        for body, ctype, path in [(data, "image/jpeg", ":classify?k=2"),
                                  (json.dumps({"instances": [{"b64": b64}]}), "application/json", ":classify?k=2"),
                                  (json.dumps({"instances": [{"image": {"b64": b64}}]}), "application/json", ":predict")]:
            status, headers, answer = server.request("POST", f"/v1/models/colours{path}", body, {"Content-Type": ctype})
            assert status == 200, answer
            answers.append((headers["x-prediction-id"], json.loads(answer)))
    finally:
        server.stop()
    from edge.bundle import Bundle

    sha = next(a["sha256"] for a in Bundle.open(image_bundle["bundle"]).tflite_artifacts() if a["variant"] == "float32")
    rows = list(csv.reader((tmp_path / "predictions.csv").open(newline="")))
    assert rows[0] == ["time", "request_id", "client", "inputs", "prediction", "variant", "model_sha256", "latency_ms",
                       "prediction_id", "model_version", "fallback"]

    width, height = Image.open(image_bundle["pngs"][1]).size  # the PNGs are larger than the model's 32x32

    def summary(kind: str, raw: bytes) -> str:
        return json.dumps({"image": kind, "width": width, "height": height, "bytes": len(raw),
                           "sha256": hashlib.sha256(raw).hexdigest()})

    jpeg_bytes = jpeg_buf.getvalue()
    want = [[summary("PNG", data), json.dumps(answers[0][1]["predictions"][0]["top_k"])],
            [summary("JPEG", jpeg_bytes), json.dumps(answers[1][1]["predictions"][0]["top_k"])],
            [summary("JPEG", jpeg_bytes), json.dumps(answers[2][1]["predictions"][0])]]
    assert [r[3:7] + r[8:] for r in rows[1:]] == [
        [*w, "float32", sha, pid, "1", ""] for w, (pid, _) in zip(want, answers)]


# ------------------------------------------------------------------ big pictures: memory


def _encoded(array: np.ndarray, fmt: str, exif: Any = None, **options: Any) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, fmt, **({"exif": exif.tobytes()} if exif is not None else {}), **options)
    return buf.getvalue()


def _old_path(data: bytes, spec: images.ImageInput) -> np.ndarray:
    """The whole picture in the model's mode, then ``from_pixels``: what ``load`` did for every size."""
    return images.from_pixels(_pillow_pixels(data, spec.channels), spec)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_sparse_path_gives_the_whole_path_s_bytes_for_every_mode_and_orientation(monkeypatch: pytest.MonkeyPatch,
                                                                                  orientation: int) -> None:
    """A picture over ``_WHOLE_PIXELS`` is resized from the rows and columns bilinear sampling reads, cropped
    in bands and converted band by band (``_grid``): the tensor's bytes are those of the whole picture
    converted and turned first (``ImageOps.exif_transpose``), for RGB, RGBA, palette (with transparency),
    gray, 16-bit gray and gray+alpha PNGs and JPEGs, each EXIF orientation, 1, 3 and 4 channels, down-
    and upscaling and odd ranges; bands small enough that several are cropped, some with gaps."""
    from PIL import Image

    monkeypatch.setattr(images, "_WHOLE_PIXELS", 0)
    monkeypatch.setattr(images, "_CROP_PIXELS", 700)
    monkeypatch.setattr(images, "_CROP_GAP", 90)
    rng = np.random.default_rng(orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    rgb = rng.integers(0, 256, (45, 61, 3), dtype=np.uint8)
    files = [_encoded(rgb, "PNG", exif), _encoded(rng.integers(0, 256, (45, 61, 4), dtype=np.uint8), "PNG", exif),
             _encoded(rgb[..., 0], "PNG", exif), _encoded(rgb, "JPEG", exif, quality=90)]
    pal = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=40)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=3, exif=exif.tobytes())
    files.append(buf.getvalue())
    for mode, values in (("I;16", rng.integers(0, 65536, (45, 61), dtype=np.uint16)), ("LA", None)):
        im = Image.fromarray(values) if values is not None else Image.fromarray(rgb[..., :2].copy().reshape(45, 61, 2), "LA")
        buf = io.BytesIO()
        im.save(buf, "PNG", exif=exif.tobytes())
        files.append(buf.getvalue())
    for data in files:
        for channels in (1, 3, 4):
            for size, pixels in (((8, 12), (0.0, 255.0)), ((30, 7), (-1.0, 1.0)), ((70, 50), (0.0, 1.0))):
                spec = images.ImageInput("x", *size, channels, pixels)
                got, summary = images.load(data, spec, summarise=True)
                want = _old_path(data, spec)
                assert got.tobytes() == want.tobytes(), (Image.open(io.BytesIO(data)).mode, channels, size)
                turned = orientation >= 5
                assert (summary["width"], summary["height"]) == ((45, 61) if turned else (61, 45))


def test_a_big_picture_is_resized_without_a_full_size_array(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deterministic side of bench/image_memory.py: resizing a 2400x2400 RGBA PNG to 32x32 allocates
    (numpy and Pillow's Python-side buffers, as tracemalloc sees them) under 1 MiB, where the whole path
    makes the whole picture's bytes twice (2400 * 2400 * 3 = 16.5 MiB each). Pillow's own decoded picture is
    made in C by its allocator, which tracemalloc does not see: bench/image_memory.py measures it."""
    import tracemalloc

    from PIL import Image

    data = _encoded(np.zeros((2400, 2400, 4), np.uint8), "PNG")
    spec = images.ImageInput("x", 32, 32, 3, (0.0, 1.0))
    im, found, turn = images._open(data, 3, images.MAX_PIXELS)
    assert isinstance(im, Image.Image) and im.mode == "RGBA"
    images._tensor(im, found, turn, spec)  # tables cached, imports done

    def traced_peak(run: Any) -> int:
        tracemalloc.start()
        try:
            run()
            return tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

    sparse = traced_peak(lambda: images._tensor(im, found, turn, spec))
    monkeypatch.setattr(images, "_WHOLE_PIXELS", 1 << 30)
    whole = traced_peak(lambda: images._tensor(im, found, turn, spec))
    assert sparse < 1 << 20 and whole > 2 * 2400 * 2400 * 3, (sparse, whole)


def test_a_jpeg_in_several_scans_over_the_memory_limit_is_refused_from_its_headers() -> None:
    """libjpeg holds a progressive (or multi-scan) file's DCT coefficients for the whole picture (2 bytes
    each, 64 a block per component): a 4:4:4 progressive JPEG costs 6 bytes a pixel besides Pillow's 4.
    Such a file is refused (413, before decoding) when that is over what the largest picture the pixel limit
    lets in takes (4 bytes a pixel); a baseline JPEG and a 4:2:0 progressive one within it are decoded."""
    a = np.random.default_rng(9).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    base, prog = _jpeg(a), _jpeg(a, progressive=True, subsampling=0)
    assert images._jpeg_decode_bytes(base) == 64 * 80 * 4
    assert images._jpeg_decode_bytes(prog) == 64 * 80 * 4 + 3 * 8 * 10 * 128
    assert images._jpeg_decode_bytes(_jpeg(a, progressive=True, subsampling=2)) == 64 * 80 * 4 + (8 * 10 + 2 * 4 * 5) * 128
    limit = (64 * 80 * 4 + 3 * 8 * 10 * 128) // 4  # pixels: 4 bytes each
    assert images.decode(prog, max_pixels=limit).shape == (64, 80, 3)
    assert images.decode(base, max_pixels=64 * 80).shape == (64, 80, 3)
    for channels in (1, 3):
        with pytest.raises(InputError) as err:
            images.decode(prog, channels, max_pixels=limit - 1)
        assert err.value.status == 413 and str(err.value) == (  # it said "about 91 MiB, over the limit of 91 MiB"
            f"the image is a 80x64 JPEG in several scans (progressive): decoding it would take about "
            f"{4 * limit:,} bytes, over the limit of {4 * (limit - 1):,} bytes (what a {limit - 1}-pixel picture "
            "takes); send a baseline JPEG, a PNG or a smaller picture")
    assert images._jpeg_decode_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF") is None  # no frame: Pillow says why
