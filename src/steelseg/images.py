"""Read steel images as single-channel uint8, whatever file they come in.

Severstal JPEGs are gray pictures stored as 3 identical channels, and some copies of the data
are PNG bytes behind a .jpg name, so files are opened by content (Pillow sniffs the bytes),
never by extension.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class ImageError(ValueError):
    """An image that is missing, unreadable or of the wrong size; the message names the file."""


def read_gray(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image as (H, W) uint8 grayscale; ``expected_shape`` (H, W) is checked if given."""
    gray = _read(Path(path), "image", lambda image: image.convert("L") if image.mode != "L" else image)
    if expected_shape is not None and gray.shape != tuple(expected_shape):
        raise ImageError(
            f"{path}: image is {gray.shape[0]}x{gray.shape[1]} (HxW), expected "
            f"{expected_shape[0]}x{expected_shape[1]}"
        )
    return gray


def read_label_map(path: str | os.PathLike, expected_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a single-channel label PNG (pixel value = class id, 0 = background) as (H, W) uint8."""
    labels = _read(Path(path), "label mask", _single_channel)
    if expected_shape is not None and labels.shape != tuple(expected_shape):
        raise ImageError(
            f"{path}: label mask is {labels.shape[0]}x{labels.shape[1]}, its image is "
            f"{expected_shape[0]}x{expected_shape[1]}"
        )
    if labels.max(initial=0) > 255:
        raise ImageError(f"{path}: label value {labels.max()} is above 255")
    return labels.astype(np.uint8)


def _read(path: Path, kind: str, convert) -> np.ndarray:
    if not path.is_file():
        raise ImageError(f"{path}: {kind} not found")
    try:
        with Image.open(path) as image:
            image.load()
            return np.asarray(convert(image))
    except ImageError as err:
        raise ImageError(f"{path}: {err}") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageError(f"{path}: cannot read {kind} ({err})") from None


def _single_channel(image: Image.Image) -> Image.Image:
    if image.mode not in ("L", "P", "I", "I;16"):
        raise ImageError(f"label mask must be single-channel, got mode {image.mode}")
    return image


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder, sorted by name (hidden files and other suffixes are skipped)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ImageError(f"{folder}: image folder not found")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
