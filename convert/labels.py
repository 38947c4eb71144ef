"""Class names (``convert --labels FILE``) and image inputs (``--image-scale``) in the manifest.

``check`` runs right after the model is loaded, so a wrong labels file or scale fails before any export;
``annotate`` adds what it found to the manifest being written:

* ``outputs[0].labels``: the class names, one per output column, from FILE (UTF-8, one name per line; a
  trailing newline, a BOM and surrounding spaces are ignored). The count must equal the output's width.
* ``inputs[i].image``: for each rank-4 float input ``[batch, height, width, channels]`` with 1, 3 or 4
  channels and a fixed height and width: ``height``, ``width``, ``channels``, and ``pixels``, the value
  range ``[low, high]`` that pixel values 0..255 are mapped to before the model (``edge.images``), with
  ``pixels_from`` saying where it came from. A model whose input goes straight into a ``Rescaling`` layer
  that shrinks values (``|scale| < 1``) takes raw pixels: ``[0, 255]``. ``--image-scale LOW..HIGH`` says
  it for any model (and wins over the detection). Neither: ``pixels`` is null, and the page and the Pi
  runner refuse image uploads for that input, naming ``--image-scale``.

Label text is data: it is stored as given and escaped wherever it is shown (the page sets ``textContent``;
the CLI prints through ``convert.cli.safe``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

from convert.errors import DeployKitError
from convert.reference import Reference

IMAGE_CHANNELS = (1, 3, 4)
MAX_LABEL_CHARS = 200
_SCALE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*\.\.\s*(-?\d+(?:\.\d+)?)\s*$")


def read_labels(path: Path) -> list[str]:
    """The class names in ``path``, one per line.

    Raises:
        DeployKitError: the file cannot be read, is not UTF-8, or has an empty, over-long, duplicated or
            control-character line (naming the line).
    """
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise DeployKitError(f"--labels {str(path)!r} cannot be read ({exc.strerror or exc}); pass a text file with one class per line") from None
    except UnicodeDecodeError:
        raise DeployKitError(f"--labels {str(path)!r} is not UTF-8 text; save it as UTF-8, one class per line") from None
    lines = text.split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()
    labels: list[str] = []
    seen: dict[str, int] = {}
    for number, raw in enumerate(lines, start=1):
        label = raw.strip()
        if not label:
            raise DeployKitError(f"--labels {str(path)!r}: line {number} is empty; write one class name per line")
        if any(ord(c) < 32 or ord(c) == 127 for c in label):
            raise DeployKitError(f"--labels {str(path)!r}: line {number} has a control character; class names are plain text")
        if len(label) > MAX_LABEL_CHARS:
            raise DeployKitError(f"--labels {str(path)!r}: line {number} is {len(label)} characters long; "
                                 f"the limit is {MAX_LABEL_CHARS}")
        if label in seen:
            raise DeployKitError(f"--labels {str(path)!r}: line {number} repeats line {seen[label]} ({label[:60]!r}); "
                                 "class names must be distinct")
        seen[label] = number
        labels.append(label)
    if len(labels) < 2:
        raise DeployKitError(f"--labels {str(path)!r} has {len(labels)} class name(s); a classifier has at least 2")
    return labels


def parse_scale(text: str) -> tuple[float, float]:
    """``LOW..HIGH`` (``0..1``, ``-1..1``, ``0..255``) as two floats.

    Raises:
        DeployKitError: not of that form, or LOW is not below HIGH.
    """
    m = _SCALE.match(text)
    if not m:
        raise DeployKitError(f"--image-scale {text!r} is not LOW..HIGH; write e.g. 0..1, -1..1 or 0..255")
    low, high = float(m.group(1)), float(m.group(2))
    if not low < high:
        raise DeployKitError(f"--image-scale {text!r}: LOW must be below HIGH")
    return low, high


def _image_shape(spec: dict[str, Any]) -> Optional[tuple[int, int, int]]:
    shape = spec["shape"]
    if spec["dtype"] not in ("float32", "float16") or len(shape) != 4:
        return None
    _, h, w, c = shape
    if h is None or w is None or c not in IMAGE_CHANNELS:
        return None
    return int(h), int(w), int(c)


# Layers that keep an image's value range (they move, crop, pad with zeros or interpolate pixels, or are the
# identity at inference): a Rescaling behind them still says what the input's pixels are.
_RANGE_KEEPING = ("Resizing", "CenterCrop", "Cropping2D", "RandomFlip", "RandomRotation", "RandomTranslation",
                  "RandomZoom", "RandomCrop")


def _leading_rescaling(ref: Reference, index: int) -> Optional[str]:
    """The name of the Rescaling layer that input ``index`` goes into (and only into), straight or through
    layers that keep the value range (``_RANGE_KEEPING``: a Resizing first, say), when it shrinks values
    (|scale| < 1: the model takes raw 0..255 pixels); None otherwise."""
    model = ref.keras_model
    if model is None:
        return None
    import keras
    import numpy as np

    try:
        tensor = model.inputs[index]
    except (AttributeError, IndexError, TypeError):
        return None
    for _ in range(len(model.layers)):
        consumers = [(layer, node) for layer in model.layers for node in getattr(layer, "_inbound_nodes", [])
                     if any(t is tensor for t in getattr(node, "input_tensors", []))]
        if len(consumers) != 1:
            return None
        layer, node = consumers[0]
        if isinstance(layer, keras.layers.Rescaling):
            scale = np.abs(np.asarray(layer.scale, dtype=np.float64))
            return layer.name if scale.size and float(scale.max()) < 1 else None
        outputs = getattr(node, "output_tensors", [])
        if type(layer).__name__ not in _RANGE_KEEPING or len(outputs) != 1:
            return None
        tensor = outputs[0]
    return None


def _images(ref: Reference, image_scale: Optional[str]) -> dict[str, dict[str, Any]]:
    scale = parse_scale(image_scale) if image_scale is not None else None
    found: dict[str, dict[str, Any]] = {}
    for i, spec in enumerate(s.to_json() for s in ref.inputs):
        dims = _image_shape(spec)
        if dims is None:
            continue
        entry: dict[str, Any] = {"height": dims[0], "width": dims[1], "channels": dims[2]}
        layer = None if scale is not None else _leading_rescaling(ref, i)
        if scale is not None:
            entry.update(pixels=list(scale), pixels_from="--image-scale")
        elif layer is not None:
            entry.update(pixels=[0.0, 255.0], pixels_from=f"Rescaling layer {layer!r}: the model takes raw pixels")
        else:
            entry.update(pixels=None, pixels_from="unknown: pass --image-scale to convert")
        found[spec["name"]] = entry
    if scale is not None and not found:
        raise DeployKitError(f"--image-scale {image_scale!r}: the model has no image input (a float input "
                             f"[batch, height, width, channels] with 1, 3 or 4 channels); leave the flag out")
    return found


def _labels(ref: Reference, path: Optional[Path]) -> Optional[list[str]]:
    if path is None:
        return None
    labels = read_labels(path)
    outputs = [s.to_json() for s in ref.outputs]
    if len(outputs) != 1:
        raise DeployKitError(f"--labels: the model has {len(outputs)} outputs "
                             f"({', '.join(o['name'] for o in outputs)}); labels name the columns of a single output")
    shape = outputs[0]["shape"]
    width = shape[-1] if len(shape) == 2 else None
    if width != len(labels):
        raise DeployKitError(f"--labels {str(path)!r} has {len(labels)} classes but the model's output "
                             f"{outputs[0]['name']!r} (shape [{', '.join(str(d) for d in shape)}]) "
                             f"has {width if width is not None else 'no fixed'} columns; write one class per output column, in order")
    return labels


def check(ref: Reference, labels: Optional[Path], image_scale: Optional[str]) -> None:
    """Check ``--labels`` and ``--image-scale`` against the loaded model (before any export).

    Raises:
        DeployKitError: as ``read_labels`` and ``parse_scale``; a label count that is not the output's width;
            ``--labels`` on a model with several outputs; ``--image-scale`` on a model without image inputs.
    """
    _labels(ref, labels)
    _images(ref, image_scale)


def annotate(manifest: dict[str, Any], ref: Reference, labels: Optional[Path], image_scale: Optional[str]) -> None:
    """Add ``outputs[0].labels`` and ``inputs[i].image`` to ``manifest`` (see the module's docstring).

    Raises:
        DeployKitError: as ``check``.
    """
    names = _labels(ref, labels)
    if names is not None:
        manifest["outputs"][0]["labels"] = names
    images = _images(ref, image_scale)
    for entry in manifest["inputs"]:
        if entry["name"] in images:
            entry["image"] = images[entry["name"]]
