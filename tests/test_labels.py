"""``convert --labels FILE`` and ``--image-scale``: the file's rules, the scale's syntax, and the CLI's
one-line refusals before any export (a label count that is not the output's width)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from convert.errors import DeployKitError
from convert.labels import _image_shape, parse_scale, read_labels
from tests.helpers import BOSTON_CSV, run_cli


def write(tmp_path: Path, data: bytes) -> Path:
    path = tmp_path / "labels.txt"
    path.write_bytes(data)
    return path


def test_one_class_per_line_bom_spaces_and_final_newline(tmp_path: Path) -> None:
    path = write(tmp_path, "\ufeff cat \r\n<b>dog</b>\nüñï\n".encode())
    assert read_labels(path) == ["cat", "<b>dog</b>", "üñï"]


@pytest.mark.parametrize("data, message", [
    (b"cat\n\ndog\n", "line 2 is empty; write one class name per line"),
    (b"cat\ndog\ncat\n", "line 3 repeats line 1 ('cat'); class names must be distinct"),
    (b"cat\nd\x1bog\n", "line 2 has a control character; class names are plain text"),
    (b"cat\n", "has 1 class name(s); a classifier has at least 2"),
    (b"\xff\xfe", "is not UTF-8 text; save it as UTF-8, one class per line"),
])
def test_bad_files_name_the_line(tmp_path: Path, data: bytes, message: str) -> None:
    path = write(tmp_path, data)
    with pytest.raises(DeployKitError) as err:
        read_labels(path)
    assert str(err.value).endswith(message)
    assert str(err.value).startswith(f"--labels {str(path)!r}")


@pytest.mark.parametrize("text, expected", [("0..1", (0.0, 1.0)), ("-1..1", (-1.0, 1.0)), ("0..255", (0.0, 255.0)),
                                            (" -0.5 .. 0.5 ", (-0.5, 0.5))])
def test_scale(text: str, expected: tuple[float, float]) -> None:
    assert parse_scale(text) == expected


@pytest.mark.parametrize("text, message", [
    ("0-1", "--image-scale '0-1' is not LOW..HIGH; write e.g. 0..1, -1..1 or 0..255"),
    ("1..0", "--image-scale '1..0': LOW must be below HIGH"),
])
def test_bad_scale(text: str, message: str) -> None:
    with pytest.raises(DeployKitError) as err:
        parse_scale(text)
    assert str(err.value) == message


@pytest.mark.parametrize("spec, image", [
    ({"dtype": "float32", "shape": [None, 32, 32, 3]}, (32, 32, 3)),
    ({"dtype": "float32", "shape": [None, 28, 28, 1]}, (28, 28, 1)),
    ({"dtype": "float32", "shape": [None, 32, 32, 2]}, None),
    ({"dtype": "int32", "shape": [None, 32, 32, 3]}, None),
    ({"dtype": "float32", "shape": [None, None, None, 3]}, None),
    ({"dtype": "float32", "shape": [None, 3]}, None),
])
def test_which_inputs_are_images(spec: dict[str, Any], image: Any) -> None:
    assert _image_shape(spec) == image


def test_cli_refuses_a_label_count_that_is_not_the_output_width(image_bundle: dict[str, Any], tmp_path: Path) -> None:
    work = image_bundle["dir"]
    labels = write(tmp_path, b"a\nb\nc\n")
    result = run_cli("convert", work / "colours.keras", "--data", work / "colours.npz", "--target", "label",
                     "--labels", labels, "--out", tmp_path / "b")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"Error: --labels {str(labels)!r} has 3 classes but the model's output 'probs' (shape [None, 4]) has 4 "
        "columns; write one class per output column, in order")
    assert not (tmp_path / "b").exists()


def test_cli_refuses_image_scale_without_an_image_input(boston_linear: Path, tmp_path: Path) -> None:

    result = run_cli("convert", boston_linear, "--data", BOSTON_CSV, "--target", "medv", "--image-scale", "0..1",
                     "--out", tmp_path / "b")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: --image-scale '0..1': the model has no image input (a float input [batch, height, width, channels] "
        "with 1, 3 or 4 channels); leave the flag out")


@pytest.mark.parametrize("layers, found", [
    (["rescale"], "scale"),
    (["resize", "rescale"], "scale"),  # was None: a Rescaling behind a Resizing went unseen
    (["flip", "crop", "rescale"], "scale"),
    (["dense", "rescale"], None),  # a layer that changes values: the pixels' range is unknown
    (["rescale_up"], None),  # |scale| >= 1: not raw pixels
])
def test_a_rescaling_behind_range_keeping_layers_says_the_model_takes_raw_pixels(layers: list[str], found: Any) -> None:
    from types import SimpleNamespace

    import keras

    from convert.labels import _leading_rescaling

    make = {"rescale": lambda: keras.layers.Rescaling(1 / 255, name="scale"),
            "rescale_up": lambda: keras.layers.Rescaling(2.0, name="scale"),
            "resize": lambda: keras.layers.Resizing(16, 16), "flip": lambda: keras.layers.RandomFlip(),
            "crop": lambda: keras.layers.CenterCrop(20, 20), "dense": lambda: keras.layers.Dense(3)}
    inp = keras.Input((24, 24, 3))
    x = inp
    for name in layers:
        x = make[name]()(x)
    model = keras.Model(inp, keras.layers.GlobalAveragePooling2D()(x))
    assert _leading_rescaling(SimpleNamespace(keras_model=model), 0) == found
