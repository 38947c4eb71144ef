"""Images as model inputs: decode (Pillow), resize and scale, exactly as the page does (``web/src/image.js``).

The steps and their arithmetic are written down in docs/architecture.md ("Class labels and image
inputs"); each is an IEEE-754 double operation in a fixed order, so numpy here and JavaScript on the page
give the same float32 tensor, bit for bit, for the same decoded pixels. Pillow is imported on first use
(the ``serve`` extra has it), so importing this module costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Optional, Sequence

import numpy as np

from edge.inputs import InputError

#: decoded pixels per image the Pi accepts (checked from the header, before decoding): a 24-megapixel photo
MAX_PIXELS = 24_000_000
#: what an image route takes (the Content-Type of the body)
IMAGE_TYPES = (b"image/jpeg", b"image/png")
DEFAULT_TOP_K = 5
_ORIENTATION = 0x0112  # the EXIF tag


@dataclass(frozen=True)
class ImageInput:
    """A manifest input with an ``image`` entry: its size, channels and pixel range (None: unknown)."""

    name: str
    height: int
    width: int
    channels: int
    pixels: Optional[tuple[float, float]]

    @classmethod
    def from_manifest(cls, entry: dict[str, Any]) -> Optional["ImageInput"]:
        """The image input an ``inputs[i]`` manifest entry describes; None when it is not one."""
        image = entry.get("image")
        if not isinstance(image, dict):
            return None
        pixels = image.get("pixels")
        return cls(entry["name"], int(image["height"]), int(image["width"]), int(image["channels"]),
                   (float(pixels[0]), float(pixels[1])) if pixels else None)

    def check_scaled(self) -> None:
        """Raises: InputError: 422 when the manifest does not say which pixel values the model takes."""
        if self.pixels is None:
            raise InputError(422, f"input {self.name!r} is an image but the bundle does not say which pixel values "
                                  "the model takes; re-convert with --image-scale LOW..HIGH (e.g. 0..1)")


def image_inputs(manifest: dict[str, Any]) -> list[ImageInput]:
    """The manifest's image inputs, in input order."""
    found = (ImageInput.from_manifest(e) for e in manifest.get("inputs") or [])
    return [i for i in found if i is not None]


def decode(data: bytes, channels: int = 3, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A JPEG or PNG file as uint8 pixels ``[height, width, 3]`` (``[.., 4]`` RGBA when ``channels`` is 4),
    EXIF orientation applied (as browsers show it).

    Raises:
        InputError: 400 when ``data`` is not a JPEG or PNG or cannot be decoded (truncated, corrupt), 413 when
            its header says it has more than ``max_pixels`` pixels (nothing is decoded then).
    """
    return _decode(data, channels, max_pixels)[0]


def _decode(data: bytes, channels: int, max_pixels: int) -> tuple[np.ndarray, str]:
    """``decode``, and the format Pillow found in the data (``JPEG`` or ``PNG``, not what the client said).

    Raises:
        InputError: as ``decode``.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if channels != 1 and data[:3] == b"\xff\xd8\xff":
        size = _plain_jpeg_size(data, max_pixels)
        if size is not None and (Image.MAX_IMAGE_PIXELS is None or size[0] * size[1] <= Image.MAX_IMAGE_PIXELS):
            try:  # libjpeg on the whole file, as Image.open + load would run it, without Pillow's marker parsing
                plain = Image.frombytes("RGB", size, data, "jpeg", "RGB", "")
            except (OSError, SyntaxError, ValueError):  # truncated or corrupt: the full path says why
                pass
            else:
                if channels == 4:
                    plain = plain.convert("RGBA")
                return np.asarray(plain, dtype=np.uint8), "JPEG"
    try:
        im = Image.open(io.BytesIO(data), formats=("JPEG", "PNG"))
    except UnidentifiedImageError:
        raise InputError(400, "the image is not a JPEG or PNG file") from None
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"the image is too large to decode ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(400, f"the image could not be read: {' '.join(str(exc).split())[:200]}") from None
    width, height = im.size
    if width * height > max_pixels:
        raise InputError(413, f"the image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels}; "
                              "send a smaller picture")
    if width < 1 or height < 1:
        raise InputError(400, f"the image is {width}x{height} pixels: empty")
    found = str(im.format)
    try:
        im.load()
        if im.getexif().get(_ORIENTATION, 1) != 1:
            im = ImageOps.exif_transpose(im)
        mode = "RGBA" if channels == 4 else "RGB"
        if im.mode != mode:
            im = im.convert(mode)
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"the image is too large to decode ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InputError(400, f"the image could not be decoded ({found}): {' '.join(str(exc).split())[:200]}") from None
    return np.asarray(im, dtype=np.uint8), found


#: the JPEG markers a plain file may have before its scan (``_plain_jpeg_size``): APP0 (JFIF), DHT, DQT, DRI,
#: COM, and the frame headers of baseline, extended and progressive Huffman coding (SOF0, SOF1, SOF2)
_PLAIN_MARKERS = frozenset({0xE0, 0xC4, 0xDB, 0xDD, 0xFE})
_PLAIN_FRAMES = frozenset({0xC0, 0xC1, 0xC2})


def _plain_jpeg_size(data: bytes, max_pixels: int) -> Optional[tuple[int, int]]:
    """(width, height) of a plain JPEG: three 8-bit components (Pillow's ``RGB``), markers one after the
    other up to the scan, none of them APP1..APP15 (no EXIF orientation, XMP, ICC profile, MPO index or
    Adobe colour transform) nor any other frame type, 1 to ``max_pixels`` pixels. For such a file
    ``Image.open`` + ``load`` ends in one libjpeg decode of the whole file in mode RGB, with nothing else
    applied, so ``Image.frombytes(..., "jpeg", "RGB", "")`` gives the same pixels (``_decode``'s shortcut);
    None for anything else (``_decode`` then takes Pillow's full path). Never raises."""
    n = len(data)
    i = 2  # after SOI
    size = None
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2:
            return None
        if marker == 0xDA:  # start of scan: the headers are all read
            return size
        if marker in _PLAIN_FRAMES:
            if size is not None or length < 8 or i + 10 > n or data[i + 4] != 8 or data[i + 9] != 3:
                return None
            height, width = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8]
            if width < 1 or height < 1 or width * height > max_pixels:
                return None
            size = (width, height)
        elif marker not in _PLAIN_MARKERS:
            return None
        i += 2 + length
    return None


@lru_cache(maxsize=32)
def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling along one axis, half-pixel centres: first and second source index, weight of the
    first (``1 - f``) and of the second (``f``). Kept per (in, out) size: a server sees the same few sizes."""
    ratio = n_in / n_out
    s = (np.arange(n_out, dtype=np.float64) + 0.5) * ratio - 0.5
    s = np.minimum(np.maximum(s, 0.0), float(n_in - 1))
    i0 = np.floor(s)
    f = s - i0
    i0 = i0.astype(np.intp)
    tables = (i0, np.minimum(i0 + 1, n_in - 1), 1.0 - f, f)
    for t in tables:
        t.flags.writeable = False
    return tables


def resize(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """``pixels`` ``[h, w, c]`` resized to ``[height, width, c]`` (bilinear, half-pixel centres, stretched), float64.

    Per output pixel, with the four source pixels ``a b / c d`` and the weights of ``_axis``:
    ``(a*gx + b*hx) * gy + (c*gx + d*hx) * hy``, each operation in IEEE double, in that order (the page's
    ``web/src/image.js`` does the same). The four source pixels are gathered first, in the input's dtype
    (uint8 from ``decode``), so only ``height * width`` pixels are converted and multiplied, whatever the
    picture's size (index and weight tables are kept per pair of sizes). At the same size every weight is 0 and the formula gives each pixel back exactly, so
    it is skipped."""
    p = np.asarray(pixels)
    h, w = p.shape[0], p.shape[1]
    if h == height and w == width:
        return p.astype(np.float64)
    i00, i01, i10, i11, gx, hx, gy, hy = _tables(h, w, height, width)
    flat = p.reshape(h * w, -1)  # one row per source pixel (a copy only when p is a view with gaps)
    top = flat.take(i00, axis=0) * gx
    top += flat.take(i01, axis=0) * hx
    bottom = flat.take(i10, axis=0) * gx
    bottom += flat.take(i11, axis=0) * hx
    top *= gy
    bottom *= hy
    top += bottom
    return top


@lru_cache(maxsize=32)
def _tables(h: int, w: int, height: int, width: int) -> tuple[np.ndarray, ...]:
    """For ``resize`` from h x w to height x width: the flat source index of the four pixels around each
    output pixel (``[height, width]``) and the four weights, shaped to broadcast against ``[height, width, c]``."""
    y0, y1, gy, hy = _axis(h, height)
    x0, x1, gx, hx = _axis(w, width)
    tables = (y0[:, None] * w + x0[None, :], y0[:, None] * w + x1[None, :],
              y1[:, None] * w + x0[None, :], y1[:, None] * w + x1[None, :],
              gx[None, :, None], hx[None, :, None], gy[:, None, None], hy[:, None, None])
    for t in tables:
        t.flags.writeable = False
    return tables


def gray(rgb: np.ndarray) -> np.ndarray:
    """One channel from RGB: (0.299 R + 0.587 G) + 0.114 B, float64, ``[h, w, 1]``."""
    p = np.asarray(rgb, dtype=np.float64)
    return ((0.299 * p[..., 0] + 0.587 * p[..., 1]) + 0.114 * p[..., 2])[..., None]


def from_pixels(pixels: np.ndarray, spec: ImageInput) -> np.ndarray:
    """Decoded uint8 pixels (``[h, w, 3|4]``) as the model's input tensor ``[1, height, width, channels]``, float32.

    Scaling is ``low + v * ((high - low) / 255)`` in double, then rounded to float32 (raw pixels, 0..255,
    are the pixels themselves: a uint8 or a double of one is exact in float32, so no arithmetic is done).

    Raises:
        InputError: 422 when the manifest does not give the input's pixel range.
    """
    spec.check_scaled()
    assert spec.pixels is not None
    if spec.channels == 1:
        source = gray(pixels[..., :3])
    elif spec.channels == 3:
        source = pixels[..., :3]
    else:
        source = pixels
    low, high = spec.pixels
    step = (high - low) / 255.0
    raw = low == 0.0 and step == 1.0  # low + v * 1.0 is v
    if raw and source.shape[0] == spec.height and source.shape[1] == spec.width:
        return source.astype(np.float32)[None]  # uint8 (or gray's doubles) to float32: exact
    values = resize(source, spec.height, spec.width)  # a new float64 array: scaled in place
    if not raw:
        values *= step
        values += low  # low + v * step: IEEE addition is commutative, so the same double
    return values.astype(np.float32)[None]


def to_tensor(data: bytes, spec: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A JPEG or PNG file as the model's input tensor ``[1, height, width, channels]``, float32.

    Raises:
        InputError: as ``decode`` and ``from_pixels``.
    """
    spec.check_scaled()
    return from_pixels(decode(data, spec.channels, max_pixels), spec)


def load(data: bytes, spec: ImageInput, summarise: bool = False,
         max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, Optional[dict[str, Any]]]:
    """``to_tensor``, and (when ``summarise``) what the prediction log records of the image instead of its
    pixels: ``{"image": "JPEG"|"PNG", "width", "height", "bytes", "sha256"}``, every value worked out here
    from the data (the format is the one Pillow found, not the request's Content-Type), so no text a client
    sent reaches the log.

    Raises:
        InputError: as ``to_tensor``.
    """
    spec.check_scaled()
    pixels, found = _decode(data, spec.channels, max_pixels)
    tensor = from_pixels(pixels, spec)
    if not summarise:
        return tensor, None
    return tensor, {"image": found, "width": int(pixels.shape[1]), "height": int(pixels.shape[0]),
                    "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def from_b64(value: Any, spec: ImageInput, where: str, max_pixels: int = MAX_PIXELS,
             summarise: bool = False) -> tuple[np.ndarray, Optional[dict[str, Any]]]:
    """TF Serving's ``{"b64": "..."}`` (standard base64 of a JPEG or PNG) as the input tensor, and its
    summary as ``load`` makes it (None unless ``summarise``).

    Raises:
        InputError: 400 for text that is not base64; as ``to_tensor``, each message prefixed by ``where``.
    """
    text = value.get("b64") if isinstance(value, dict) else None
    if not isinstance(text, str) or len(value) != 1:
        raise InputError(422, f'{where}input {spec.name!r} is an image: send {{"b64": "<base64 of a JPEG or PNG>"}}')
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InputError(400, f"{where}input {spec.name!r}: the b64 value is not base64") from None
    try:
        return load(data, spec, summarise, max_pixels)
    except InputError as exc:
        raise InputError(exc.status, f"{where}{exc}") from None


def is_b64(value: Any) -> bool:
    """Whether ``value`` is TF Serving's binary form, ``{"b64": ...}``."""
    return isinstance(value, dict) and "b64" in value


def top_k(scores: Sequence[float], labels: Optional[Sequence[str]], k: int) -> list[dict[str, Any]]:
    """The ``k`` highest scores of one row, highest first (ties: the lower index first), each as
    ``{"index", "label", "score"}`` (``label`` null without labels). The page orders the same way.

    The order is a stable sort of the negated scores (NaN last); for a few of many classes (k under a
    quarter of them) only the scores at least the partition's k-th highest are sorted, which gives the same
    list when there are k of them or more (the partition puts NaN last, so with NaN the k-th may be a
    lower score than the sort's k-th, or NaN: then fewer than k are found and the whole row is sorted)."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    k = max(1, min(k, s.size))
    order = None
    if 4 * k < s.size:
        kth = np.partition(s, s.size - k)[s.size - k]  # the k-th highest score (when there is no NaN)
        chosen = np.flatnonzero(s >= kth)  # in index order: ties keep the lower indices first
        if chosen.size >= k:
            order = chosen[np.argsort(-s[chosen], kind="stable")[:k]]
    if order is None:
        order = np.argsort(-s, kind="stable")[:k]
    indices, values = order.tolist(), s[order].tolist()
    if labels:
        return [{"index": i, "label": labels[i], "score": v} for i, v in zip(indices, values)]
    return [{"index": i, "label": None, "score": v} for i, v in zip(indices, values)]
