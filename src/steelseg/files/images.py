"""Read steel images as single-channel uint8, whatever file they come in.

Severstal JPEGs are gray pictures stored as 3 identical channels, and some copies of the data
are PNG bytes behind a .jpg name, so files are opened by content (Pillow sniffs the bytes),
never by extension; but only as one of ``READ_FORMATS`` (PNG, JPEG, BMP, TIFF, PGM/PPM):
formats whose decoders run other programs (EPS runs Ghostscript) are never tried.

How sample values become 0..255 (rounding is half up: ``floor(v + 0.5)``, so 127.5 -> 128):

- 8-bit images (L, RGB, RGBA, P, LA, ...): as Pillow's ``convert("L")`` gives them; colour
  becomes luminance L = 0.299 R + 0.587 G + 0.114 B.
- 16-bit unsigned images (Pillow modes I;16, I;16B, I;16L, and an "I" image whose file stores
  16-bit unsigned samples, e.g. a 16-bit PGM) are scaled by their bit depth, not by their
  maximum: v * 255 / 65535, so 257 -> 1 and 1000 -> 4. Pillow keeps only the high byte of
  16-bit colour PNG and TIFF (1000 -> 3), so those are decoded with OpenCV instead, and their
  luminance is taken before scaling.
- Float images (mode F, e.g. float32 TIFF): values in 0..1 (maximum <= 1) are scaled by 255;
  values in 0..255 are taken as they are. A negative value, one above 255, NaN or infinity is
  an ImageError naming the file and the range found. An image that is all 0..1 is read as 0..1,
  even if it was meant as a very dark 0..255 image.
- 32-bit integer images (mode I from other files, signed 16-bit TIFF): values in 0..255 are
  taken as they are, values in 0..65535 follow the 16-bit rule, anything else is an ImageError.
- A TIFF that Pillow cannot identify (e.g. 3-channel float32) is decoded with OpenCV and
  follows the same rules.

Every read is capped at ``pixel_limit()`` pixels (H x W), checked from the file's header before
any pixel is decoded: a few kB of PNG can declare billions of pixels (a decompression bomb).
The cap is ``MAX_PIXELS`` (four 256 x 16,000 strips, 16,384,000 px; the service's
``--max-pixels`` default too), raised or lowered with the environment variable
``STEELSEG_MAX_PIXELS``. An image over it is a ``TooManyPixelsError`` naming the file.
"""

from __future__ import annotations

import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from steelseg.errors import SteelsegError

# Every open here is checked against our own cap right after (lower than Pillow's 89 Mpx warning
# by default); Pillow's warning would only add lines to a one-line refusal. Set once, not around
# each open: catch_warnings is not thread-safe, and folders are read in threads.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
# The only decoders ever tried, whatever the bytes claim to be (PPM: Netpbm's PGM and PPM).
# Pillow would otherwise try every plugin it has, EPS among them, which runs Ghostscript.
READ_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "PPM")
MAX_PIXELS = 256 * 16_000 * 4  # four 256 x 16,000 strips; see pixel_limit()
MAX_PIXELS_ENV = "STEELSEG_MAX_PIXELS"

_UNSIGNED_16 = ("I;16", "I;16B", "I;16L", "I;16N")  # Pillow modes and raw modes
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# ITU-R 601-2 (0.299, 0.587, 0.114) in 65536ths, as Pillow's convert("L") has them: they sum to
# exactly 1, so three equal channels give back their value
_LUMINANCE_RGB = np.array([19595, 38470, 7471]) / 65536


class ImageError(SteelsegError, ValueError):
    """An image that is missing, unreadable or of the wrong size; the message names the file."""


class TooManyPixelsError(ImageError):
    """An image over a pixel limit, refused before it was decoded."""


def pixel_limit() -> int:
    """The pixel cap of every image read: ``STEELSEG_MAX_PIXELS`` when set, else ``MAX_PIXELS``."""
    value = os.environ.get(MAX_PIXELS_ENV, "").strip().replace("_", "").replace(",", "")
    if not value:
        return MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise ImageError(f"{MAX_PIXELS_ENV}={os.environ[MAX_PIXELS_ENV]!r}: expected a positive whole number of pixels")
    return int(value)


def read_gray(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as (H, W) uint8 grayscale; ``expected_shape`` (H, W) is checked if given.

    8-bit, 16-bit and float files are mapped to 0..255 by the rules of the module docstring;
    images over ``pixel_limit()`` are refused from their header (``TooManyPixelsError``).
    """
    limit = pixel_limit()
    gray = _read(Path(path), "image", lambda file: _decode_gray(file, limit=limit))
    if expected_shape is not None and gray.shape != tuple(expected_shape):
        raise ImageError(
            f"{path}: image is {gray.shape[0]}x{gray.shape[1]} (HxW), expected {expected_shape[0]}x{expected_shape[1]}"
        )
    return gray


def decode_gray(data: bytes, name: str = "upload", max_pixels: int | None = None) -> np.ndarray:
    """Image file bytes (an upload) -> (H, W) uint8 gray, by the rules of ``read_gray``.
    ``max_pixels`` (default: the module's ``pixel_limit()``): images with more pixels are
    refused from their header, before decoding (a decompression bomb: a few kB of PNG can
    declare billions of pixels)."""
    limit = max_pixels if max_pixels is not None else pixel_limit()
    try:
        return _decode_gray(io.BytesIO(data), data, limit=limit)
    except ImageError as err:
        raise type(err)(f"{name}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{name}: cannot read image ({err})") from None


def read_shape(path: str | os.PathLike) -> tuple[int, int]:
    """An image's (H, W) from its file header, without decoding it; a file Pillow cannot size
    is read in full, whose error names it if it is not an image at all. Over ``pixel_limit()``:
    a ``TooManyPixelsError``, as for ``read_gray``."""
    limit = pixel_limit()
    try:
        with _open(path, limit) as image:
            return image.height, image.width
    except TooManyPixelsError as err:
        raise TooManyPixelsError(f"{path}: {err}") from None
    except (OSError, ValueError, SyntaxError):
        return read_gray(path).shape


def read_label_map(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a single-channel label PNG (pixel value = class id, 0 = background) as (H, W) uint8;
    capped at ``pixel_limit()`` as ``read_gray`` is."""
    limit = pixel_limit()
    labels = _read(Path(path), "label mask", lambda file: _decode_labels(file, limit))
    if expected_shape is not None and labels.shape != tuple(expected_shape):
        raise ImageError(
            f"{path}: label mask is {labels.shape[0]}x{labels.shape[1]}, its image is "
            f"{expected_shape[0]}x{expected_shape[1]}"
        )
    if labels.max(initial=0) > 255:
        raise ImageError(f"{path}: label value {labels.max()} is above 255")
    return labels.astype(np.uint8)


def _read(path: Path, kind: str, decode) -> np.ndarray:
    if not path.is_file():
        raise ImageError(f"{path}: {kind} not found")
    try:
        return decode(path)
    except ImageError as err:
        raise type(err)(f"{path}: {err}") from None  # a TooManyPixelsError stays one
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: cannot read {kind} ({err})") from None


def _open(file: Path | io.BytesIO, limit: int) -> Image.Image:
    """``Image.open`` (which reads the header only), refused over ``limit`` pixels."""
    try:
        image = Image.open(file, formats=READ_FORMATS)
    except Image.DecompressionBombError as err:  # Pillow's own limit (~179 Mpx), when ours is set above it
        raise TooManyPixelsError(
            f"{str(err).rstrip('.')}; the limit is {limit:,} (set {MAX_PIXELS_ENV} to change it)"
        ) from None
    _check_pixels(image.height, image.width, limit, image)
    return image


def _check_pixels(height: int, width: int, limit: int, image: Image.Image | None = None) -> None:
    if height * width > limit:
        if image is not None:
            image.close()
        raise TooManyPixelsError(
            f"image is {height}x{width} (HxW), {height * width:,} pixels; the limit is {limit:,} "
            f"(set {MAX_PIXELS_ENV} to change it)"
        )


def _decode_labels(path: Path, limit: int) -> np.ndarray:
    with _open(path, limit) as image:
        image.load()
        return np.asarray(_single_channel(image))


def _single_channel(image: Image.Image) -> Image.Image:
    if image.mode not in ("L", "P", "I", "I;16"):
        raise ImageError(f"label mask must be single-channel, got mode {image.mode}")
    return image


def _decode_gray(path: Path | io.BytesIO, data: bytes | None = None, *, limit: int) -> np.ndarray:
    """A file (``path``), or bytes (``data``, with ``path`` a BytesIO of them); over ``limit``
    pixels refused from the header."""
    read_bytes = (lambda: data) if data is not None else path.read_bytes
    try:
        with _open(path, limit) as image:
            # The tiles say how many bits each stored sample has; load() empties them.
            raw_modes = [_raw_mode(tile) for tile in image.tile]
            if not image.mode.startswith("I") and any(m.endswith((";16B", ";16L", ";16N")) for m in raw_modes):
                return _decode_gray_cv2(read_bytes())  # 16-bit colour: Pillow would keep the high byte only
            image.load()
            return _gray_from_pillow(image, raw_modes)
    except UnidentifiedImageError:
        raw = read_bytes()
        if not raw:
            raise ImageError("cannot read image: the file is empty") from None
        if raw[:4] not in _TIFF_MAGIC:
            raise ImageError(f"cannot read image: not {', '.join(READ_FORMATS[:-1])} or PGM/PPM") from None
        _check_pixels(*_tiff_shape(raw), limit)  # OpenCV would decode it whole: size it first
        return _decode_gray_cv2(raw)  # e.g. 3-channel float TIFF, which Pillow does not open


def _tiff_shape(raw: bytes) -> tuple[int, int]:
    """(H, W) of a TIFF's first image, from its first IFD (classic or BigTIFF), undecoded."""
    order = "<" if raw[:2] == b"II" else ">"
    big = raw[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", raw, 8)
            (count,) = struct.unpack_from(order + "Q", raw, offset)
            entry, start, value_format = 20, offset + 8, "Q"
        else:
            (offset,) = struct.unpack_from(order + "I", raw, 4)
            (count,) = struct.unpack_from(order + "H", raw, offset)
            entry, start, value_format = 12, offset + 2, "I"
        sizes = {}
        for i in range(min(count, 4096)):
            tag, kind = struct.unpack_from(order + "HH", raw, start + i * entry)
            if tag in (256, 257):  # ImageWidth, ImageLength: SHORT (3) or LONG / LONG8
                at = start + i * entry + (12 if big else 8)
                sizes[tag] = struct.unpack_from(order + ("H" if kind == 3 else value_format), raw, at)[0]
    except struct.error:
        raise ImageError("cannot read image (TIFF header cut short)") from None
    if len(sizes) < 2:
        raise ImageError("cannot read image (TIFF header without ImageWidth and ImageLength)")
    return sizes[257], sizes[256]


def _raw_mode(tile) -> str:
    args = tile.args if hasattr(tile, "args") else tile[3]
    return args[0] if isinstance(args, tuple) and args and isinstance(args[0], str) else str(args)


def _gray_from_pillow(image: Image.Image, raw_modes: list[str]) -> np.ndarray:
    if image.mode in _UNSIGNED_16 or (image.mode == "I" and raw_modes and set(raw_modes) <= set(_UNSIGNED_16)):
        return _scale_16bit(np.asarray(image))
    if image.mode == "I" or image.mode.startswith("I;16"):
        return _scale_integer(np.asarray(image))
    if image.mode == "F":
        return _scale_float(np.asarray(image))
    return np.asarray(image.convert("L") if image.mode != "L" else image)


def _decode_gray_cv2(raw: bytes) -> np.ndarray:
    import cv2

    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # its own lines would follow ours
    try:
        pixels = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error as err:
        raise ImageError(f"cannot read image (OpenCV: {err.err})") from None
    finally:
        cv2.utils.logging.setLogLevel(level)
    if pixels is None:
        raise ImageError("cannot read image (neither Pillow nor OpenCV can decode it)")
    if pixels.ndim == 3 and pixels.shape[2] >= 3 and pixels.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(pixels[..., 2::-1])).convert("L"))
    if pixels.dtype == np.uint8:  # gray, or gray + alpha
        return np.ascontiguousarray(pixels if pixels.ndim == 2 else pixels[..., 0])
    if pixels.dtype == np.uint16:
        return _scale_16bit(pixels)
    if pixels.dtype.kind == "f":
        return _scale_float(pixels)
    return _scale_integer(pixels)


# Samples wider than 8 bits are converted a block of rows at a time (about BLOCK_PIXELS pixels):
# the float64 work arrays then stay near 100 MB whatever the image's size, so decoding costs its
# decoded samples (up to 8 bytes a pixel for 16-bit RGBA), 1 byte a pixel for the result, and that.
BLOCK_PIXELS = 1 << 20


def _luminance(block: np.ndarray) -> np.ndarray:
    """(h, W) or (h, W, C) BGR(A) / gray(+alpha) samples -> (h, W) float64; colour becomes luminance."""
    if block.ndim == 2:
        return block.astype(np.float64)
    if block.shape[2] < 3:
        return block[..., 0].astype(np.float64)  # gray, or gray + alpha
    return block[..., 2::-1].astype(np.float64) @ _LUMINANCE_RGB


def _blocks(values: np.ndarray) -> Iterator[slice]:
    height, width = values.shape[:2]
    rows = max(1, BLOCK_PIXELS // max(1, width))
    for top in range(0, height, rows):
        yield slice(top, top + rows)


def _converted(values: np.ndarray, scale: float) -> np.ndarray:
    """uint8 (H, W): each block's luminance x ``scale``, rounded half up."""
    out = np.empty(values.shape[:2], np.uint8)
    for rows in _blocks(values):
        out[rows] = np.floor(_luminance(values[rows]) * scale + 0.5)
    return out


def _span(values: np.ndarray) -> tuple[float, float, bool]:
    """(lowest, highest finite luminance, whether any is NaN or infinite), block by block."""
    low, high, bad = np.inf, -np.inf, False
    for rows in _blocks(values):
        block = _luminance(values[rows])
        finite = np.isfinite(block)
        bad = bad or not finite.all()
        if finite.any():
            low, high = min(low, block[finite].min()), max(high, block[finite].max())
    return (np.nan, np.nan, bad) if low > high else (low, high, bad)


def _scale_16bit(values: np.ndarray) -> np.ndarray:
    """0..65535 -> 0..255 by bit depth: v * 255 / 65535 rounded half up (v / 257 is never a tie)."""
    return _converted(values, 255 / 65535)


def _scale_float(values: np.ndarray) -> np.ndarray:
    low, high, bad = _span(values)
    if bad:
        raise ImageError(f"float image holds NaN or infinite values (finite values span {low:g}..{high:g})")
    if low < 0 or high > 255:
        raise ImageError(f"float image values span {low:g}..{high:g}; expected 0..1 or 0..255")
    return _converted(values, 255 if high <= 1 else 1)


def _scale_integer(values: np.ndarray) -> np.ndarray:
    if values.size == 0:
        return np.zeros(values.shape[:2], np.uint8)
    low, high, _ = _span(values)
    if low < 0 or high > 65535:
        raise ImageError(f"integer image values span {low:g}..{high:g}; expected 0..255 or 0..65535")
    return _converted(values, 1 if high <= 255 else 255 / 65535)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder, sorted by name (hidden files and other suffixes are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: image folder not found")
    return sorted(p for p in _visible_files(folder) if p.suffix.lower() in IMAGE_SUFFIXES)


def require_images(folder: str | os.PathLike) -> list[Path]:
    """``list_images``, but an ImageError when the folder holds no image at all."""
    images = list_images(folder)
    if not images:
        message = f"{folder}: no images found (looked for {', '.join(IMAGE_SUFFIXES)})"
        skipped = list(_visible_files(Path(folder)))
        if skipped:
            suffixes = ", ".join(sorted({p.suffix.lower() or "no suffix" for p in skipped}))
            noun = "file" if len(skipped) == 1 else "files"
            message += f"; skipped {len(skipped)} {noun} with other suffixes ({suffixes})"
        raise ImageError(message)
    return images


def _visible_files(folder: Path) -> Iterator[Path]:
    return (p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
