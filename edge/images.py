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
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Iterator, Optional, Sequence

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
    im, found, turn = _open(data, channels, max_pixels)
    with _decoding(found):
        return _whole(im, turn, _mode(channels)), found


#: EXIF orientation -> (Pillow's transpose, as ``ImageOps.exif_transpose`` picks it; and how a pixel of the
#: turned picture is found in the stored one: rows and columns swapped, stored rows counted from the bottom,
#: stored columns from the right). Turned (r, c) is stored (r, c) ... (c, r) when swapped, each flipped as said.
_TURNS = {2: ("FLIP_LEFT_RIGHT", False, False, True), 3: ("ROTATE_180", False, True, True),
          4: ("FLIP_TOP_BOTTOM", False, True, False), 5: ("TRANSPOSE", True, False, False),
          6: ("ROTATE_270", True, True, False), 7: ("TRANSVERSE", True, True, True),
          8: ("ROTATE_90", True, False, True)}
#: when only some rows are read (``_grid``): at most this many stored pixels are cropped and converted at a
#: time, and a crop goes on over rows not needed while they are fewer pixels than this (cheaper than another crop)
_CROP_PIXELS = 1 << 18
_CROP_GAP = 1 << 15
#: a picture of up to this many pixels is made whole in the model's mode before it is resized (``_tensor``):
#: faster than cropping bands (a 1920x1080 JPEG: ~1 ms against ~2), and at most ~20 MB more than Pillow's
#: copy (an eighth of it for a gray input, whose whole path makes doubles of every pixel)
_WHOLE_PIXELS = 1 << 21


def _mode(channels: int) -> str:
    return "RGBA" if channels == 4 else "RGB"


@contextmanager
def _decoding(found: str) -> Iterator[None]:
    """Pillow's errors while the pixels are made (after the header) as InputError: 413 for a decompression
    bomb, 400 naming the problem for truncated or corrupt data."""
    from PIL import Image

    try:
        yield
    except Image.DecompressionBombError as exc:
        raise InputError(413, f"the image is too large to decode ({exc})") from None
    except (OSError, SyntaxError, ValueError) as exc:  # truncated or corrupt data
        raise InputError(400, f"the image could not be decoded ({found}): {' '.join(str(exc).split())[:200]}") from None


def _open(data: bytes, channels: int, max_pixels: int) -> tuple[Any, str, Optional[tuple[str, bool, bool, bool]]]:
    """The decoded picture as Pillow holds it, in the file's own mode (not converted, not turned: the one
    full-size copy of its pixels), the format Pillow found, and its EXIF turn (``_TURNS``; None: as stored).

    Raises:
        InputError: as ``decode``.
    """
    from PIL import Image, UnidentifiedImageError

    jpeg = _jpeg_decode_bytes(data) if data[:3] == b"\xff\xd8\xff" else None
    if channels != 1 and jpeg is not None and jpeg <= 4 * max_pixels:
        size = _plain_jpeg_size(data, max_pixels)
        if size is not None and (Image.MAX_IMAGE_PIXELS is None or size[0] * size[1] <= Image.MAX_IMAGE_PIXELS):
            try:  # libjpeg on the whole file, as Image.open + load would run it, without Pillow's marker parsing
                return Image.frombytes("RGB", size, data, "jpeg", "RGB", ""), "JPEG", None
            except (OSError, SyntaxError, ValueError):  # truncated or corrupt: the full path says why
                pass
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
    if found == "JPEG" and jpeg is not None and jpeg > 4 * max_pixels:
        raise InputError(413, f"the image is a {width}x{height} JPEG in several scans (progressive): decoding it would "
                              f"take about {jpeg:,} bytes, over the limit of {4 * max_pixels:,} bytes (what a "
                              f"{max_pixels}-pixel picture takes); send a baseline JPEG, a PNG or a smaller picture")
    with _decoding(found):
        im.load()
        orientation = im.getexif().get(_ORIENTATION, 1)
    return im, found, _TURNS.get(orientation) if isinstance(orientation, int) else None


def _turned_size(im: Any, turn: Optional[tuple[str, bool, bool, bool]]) -> tuple[int, int]:
    """(height, width) of the picture as shown (EXIF orientation applied)."""
    width, height = im.size
    return (width, height) if turn is not None and turn[1] else (height, width)


def _whole(im: Any, turn: Optional[tuple[str, bool, bool, bool]], mode: str) -> np.ndarray:
    """All the pixels, turned and in ``mode``, as uint8 ``[height, width, channels]`` (what ``decode`` gives)."""
    from PIL import Image

    if turn is not None:
        im = im.transpose(Image.Transpose[turn[0]])  # the pixels ImageOps.exif_transpose gives
    if im.mode != mode:
        im = im.convert(mode)
    return np.asarray(im, dtype=np.uint8)


def _grid(im: Any, turn: Optional[tuple[str, bool, bool, bool]], mode: str, rows: np.ndarray,
          cols: np.ndarray) -> np.ndarray:
    """The pixels of the turned picture (in ``mode``) at the given rows and columns (each ascending) and only
    those, uint8 ``[len(rows), len(cols), channels]``: ``_whole(im, turn, mode)[rows][:, cols]``, without
    making the whole picture in ``mode`` nor turning it (each pixel's value is the same: converting a mode is
    pixel by pixel, and turning moves pixels). The stored rows needed are cropped in bands (``_CROP_PIXELS``,
    ``_CROP_GAP``) and converted, so at most a band of the picture is ever in ``mode`` at once."""
    width, height = im.size
    swap, flip_rows, flip_cols = turn[1:] if turn is not None else (False, False, False)
    stored_rows, stored_cols = (cols, rows) if swap else (rows, cols)  # turned columns are stored rows when swapped
    if flip_rows:
        stored_rows = height - 1 - stored_rows[::-1]
    if flip_cols:
        stored_cols = width - 1 - stored_cols[::-1]
    left, right = int(stored_cols[0]), int(stored_cols[-1]) + 1
    take = stored_cols - left
    out = np.empty((len(stored_rows), len(stored_cols), len(mode)), np.uint8)
    most = max(1, _CROP_PIXELS // (right - left))  # stored rows in one crop
    gap = _CROP_GAP // (right - left)  # rows not needed a crop may span rather than start another
    listed = stored_rows.tolist()
    a = 0
    while a < len(listed):
        top, b = listed[a], a + 1
        while b < len(listed) and listed[b] - top < most and listed[b] - listed[b - 1] <= gap + 1:
            b += 1
        part = im.crop((left, top, right, listed[b - 1] + 1))
        if part.mode != mode:
            part = part.convert(mode)
        band = np.asarray(part, dtype=np.uint8)
        out[a:b] = band.take(stored_rows[a:b] - top, axis=0).take(take, axis=1)
        a = b
    if flip_rows:
        out = out[::-1]
    if flip_cols:
        out = out[:, ::-1]
    return np.ascontiguousarray(out.transpose(1, 0, 2) if swap else out)


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


#: the JPEG frame headers (SOF0..SOF15 but DHT, JPG and DAC), and those of progressive coding among them
_JPEG_FRAMES = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_PROGRESSIVE = frozenset({0xC2, 0xC6, 0xCA, 0xCE})


def _up(a: int, b: int) -> int:
    """a / b rounded up (whole numbers)."""
    return -(-a // b)


def _jpeg_decode_bytes(data: bytes) -> Optional[int]:
    """About how many bytes decoding the JPEG ``data`` holds at once, from its headers: Pillow's picture (4
    bytes a pixel, 1 for gray) and, for a file libjpeg reads in several scans (progressive coding, or a first
    scan without every component), libjpeg's whole-picture buffer of DCT coefficients (2 bytes each, 64 a
    block, per component at its sampling; a 4:4:4 progressive file: 6 bytes a pixel, more than the picture).
    The markers are walked as libjpeg reads them (stray bytes and fill 0xFF skipped) up to the first scan;
    None when no frame header and scan are found (libjpeg then fails too). Never raises."""
    n, i = len(data), 2
    frame = None
    while True:
        i = data.find(b"\xff", i)
        while 0 <= i < n - 1 and data[i + 1] == 0xFF:  # fill bytes
            i += 1
        if i < 0 or i + 4 > n:
            return None
        marker = data[i + 1]
        if marker == 0x00 or 0xD0 <= marker <= 0xD8 or marker == 0x01:  # stuffed byte, RSTn, SOI, TEM: no length
            i += 2
            continue
        length = (data[i + 2] << 8) | data[i + 3]
        if marker in _JPEG_FRAMES and i + 10 <= n:
            height, width, count = (data[i + 5] << 8) | data[i + 6], (data[i + 7] << 8) | data[i + 8], data[i + 9]
            sampling = [(data[j] >> 4, data[j] & 15) for j in range(i + 11, min(i + 10 + 3 * count, n), 3)]
            frame = (marker, width, height, count, sampling)
        elif marker == 0xDA:
            if frame is None or i + 5 > n:
                return None
            marker, width, height, count, sampling = frame
            picture = width * height * (1 if count == 1 else 4)
            if marker not in _JPEG_PROGRESSIVE and data[i + 4] >= count:
                return picture  # one interleaved scan: decoded a few rows of blocks at a time
            h_max = max([h for h, _ in sampling] + [1])
            v_max = max([v for _, v in sampling] + [1])
            blocks = 0
            for h, v in sampling:  # blocks across and down, as libjpeg rounds them (jdcoefct.c)
                h, v = max(h, 1), max(v, 1)
                across, down = _up(width * h, h_max), _up(height * v, v_max)  # the component's pixels
                blocks += _up(_up(across, 8), h) * h * _up(_up(down, 8), v) * v
            return picture + 128 * blocks
        i += 2 + max(length, 2)


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
    return _bilinear(p.reshape(h * w, -1), _tables(h, w, height, width))  # a copy only when p is a view with gaps


def _bilinear(flat: np.ndarray, tables: tuple[np.ndarray, ...]) -> np.ndarray:
    """``resize``'s arithmetic on ``flat`` (one row per source pixel) with the flat index tables and weights
    of ``_tables`` (or ``_sparse``), float64 ``[height, width, c]``."""
    i00, i01, i10, i11, gx, hx, gy, hy = tables
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
    return _flat(y0, y1, gy, hy, x0, x1, gx, hx, w)


def _flat(y0: np.ndarray, y1: np.ndarray, gy: np.ndarray, hy: np.ndarray, x0: np.ndarray, x1: np.ndarray,
          gx: np.ndarray, hx: np.ndarray, w: int) -> tuple[np.ndarray, ...]:
    """``_tables``' tables from the per-axis ones, for source rows ``w`` pixels long (read-only)."""
    tables = (y0[:, None] * w + x0[None, :], y0[:, None] * w + x1[None, :],
              y1[:, None] * w + x0[None, :], y1[:, None] * w + x1[None, :],
              gx[None, :, None], hx[None, :, None], gy[:, None, None], hy[:, None, None])
    for t in tables:
        t.flags.writeable = False
    return tables


@lru_cache(maxsize=32)
def _sparse(h: int, w: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """For resizing h x w to height x width from only the pixels bilinear sampling reads: the rows and the
    columns read (ascending, each at most twice the output's), and ``_tables``' tables indexing the grid of
    those rows and columns (``_grid``) instead of the whole picture: the same four pixels and weights."""
    y0, y1, gy, hy = _axis(h, height)
    x0, x1, gx, hx = _axis(w, width)
    rows, cols = np.union1d(y0, y1), np.union1d(x0, x1)
    for t in (rows, cols):
        t.flags.writeable = False
    at = np.searchsorted
    return rows, cols, _flat(at(rows, y0), at(rows, y1), gy, hy, at(cols, x0), at(cols, x1), gx, hx, len(cols))


def gray(rgb: np.ndarray) -> np.ndarray:
    """One channel from RGB: (0.299 R + 0.587 G) + 0.114 B, float64, ``[h, w, 1]``."""
    p = np.asarray(rgb, dtype=np.float64)
    return ((0.299 * p[..., 0] + 0.587 * p[..., 1]) + 0.114 * p[..., 2])[..., None]


def _source(pixels: np.ndarray, channels: int) -> np.ndarray:
    """The values resized for ``channels``: gray (float64) for 1, RGB for 3, RGBA for 4 (uint8 stays uint8)."""
    if channels == 1:
        return gray(pixels[..., :3])
    if channels == 3:
        return pixels[..., :3]
    return pixels


def _scaled(values: np.ndarray, spec: ImageInput) -> np.ndarray:
    """Resized float64 ``values`` (a new array: scaled in place) as the model's float32 input ``[1, ...]``."""
    assert spec.pixels is not None
    low, high = spec.pixels
    step = (high - low) / 255.0
    if not (low == 0.0 and step == 1.0):  # raw pixels (low + v * 1.0 is v): nothing to do
        values *= step
        values += low  # low + v * step: IEEE addition is commutative, so the same double
    return values.astype(np.float32)[None]


def from_pixels(pixels: np.ndarray, spec: ImageInput) -> np.ndarray:
    """Decoded uint8 pixels (``[h, w, 3|4]``) as the model's input tensor ``[1, height, width, channels]``, float32.

    Scaling is ``low + v * ((high - low) / 255)`` in double, then rounded to float32 (raw pixels, 0..255,
    are the pixels themselves: a uint8 or a double of one is exact in float32, so no arithmetic is done).

    Raises:
        InputError: 422 when the manifest does not give the input's pixel range.
    """
    spec.check_scaled()
    assert spec.pixels is not None
    source = _source(pixels, spec.channels)
    low, high = spec.pixels
    raw = low == 0.0 and (high - low) / 255.0 == 1.0  # low + v * 1.0 is v
    if raw and source.shape[0] == spec.height and source.shape[1] == spec.width:
        return source.astype(np.float32)[None]  # uint8 (or gray's doubles) to float32: exact
    return _scaled(resize(source, spec.height, spec.width), spec)


def _tensor(im: Any, found: str, turn: Optional[tuple[str, bool, bool, bool]], spec: ImageInput) -> np.ndarray:
    """``from_pixels(_whole(im, turn, mode), spec)``, the same bytes; for a picture over ``_WHOLE_PIXELS``
    and of another size than the model's, from only the rows and columns bilinear sampling reads
    (``_sparse``, ``_grid``): no full-size array is made besides Pillow's own decoded picture (a 4800x4800
    RGB PNG: 88 MiB held at the peak, not 220: the whole picture in RGB and two copies of its bytes).

    Raises:
        InputError: 400 when Pillow cannot convert the picture's mode.
    """
    h, w = _turned_size(im, turn)
    with _decoding(found):
        whole = _WHOLE_PIXELS if spec.channels != 1 else _WHOLE_PIXELS >> 3  # gray: 8-byte doubles of each pixel
        if (h, w) == (spec.height, spec.width) or h * w <= whole:
            return from_pixels(_whole(im, turn, _mode(spec.channels)), spec)
        rows, cols, tables = _sparse(h, w, spec.height, spec.width)
        grid = _grid(im, turn, _mode(spec.channels), rows, cols)
    source = _source(grid, spec.channels)
    return _scaled(_bilinear(source.reshape(len(rows) * len(cols), -1), tables), spec)


def to_tensor(data: bytes, spec: ImageInput, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """A JPEG or PNG file as the model's input tensor ``[1, height, width, channels]``, float32.

    Raises:
        InputError: as ``decode`` and ``from_pixels``.
    """
    return load(data, spec, False, max_pixels)[0]


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
    im, found, turn = _open(data, spec.channels, max_pixels)
    tensor = _tensor(im, found, turn, spec)
    if not summarise:
        return tensor, None
    height, width = _turned_size(im, turn)
    return tensor, {"image": found, "width": width, "height": height,
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
