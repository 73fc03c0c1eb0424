"""Run-length encoding of defect masks, in the Severstal competition's convention.

Pixels are numbered from 1, top to bottom, then left to right (column-major), and a mask is
written as space-separated ``start length`` pairs: ``"1 3 10 5"`` is pixels 1-3 and 10-14.
Everything here is vectorised numpy: no Python loop over pixels or runs.
"""

from __future__ import annotations

import re

import numpy as np

from steelseg.errors import SteelsegError

# Beyond any pixel number: larger values would overflow the int64 run arithmetic (start +
# length) and index past any mask instead of failing with a message.
MAX_PIXEL = 10**12
_INTEGER = re.compile(r"-?[0-9]+")


class RLEError(SteelsegError, ValueError):
    """An encoded-pixels string that does not describe a mask of the given shape."""


def encode(mask: np.ndarray) -> str:
    """Encode a 2-D mask (H x W, any dtype, nonzero = defect) as a run-length string.

    An empty mask encodes to ``""``, which is what the competition expects for "no defect".
    """
    if mask.ndim != 2:
        raise ValueError(f"encode expects a 2-D mask, got shape {mask.shape}")
    if not mask.any():  # most (image, class) pairs: skip the column-order copy
        return ""
    pixels = mask.ravel(order="F").astype(bool, copy=False)
    # A False sentinel at each end makes every run start and end at a change of value.
    padded = np.concatenate(([False], pixels, [False]))
    changes = np.flatnonzero(padded[1:] != padded[:-1])
    changes[1::2] -= changes[::2]  # ends -> lengths
    changes[::2] += 1  # 0-indexed starts -> 1-indexed
    return " ".join(map(str, changes.tolist()))


def parse(rle: str) -> tuple[np.ndarray, np.ndarray]:
    """Split an encoded-pixels string into validated 1-indexed starts and lengths (int64).

    Checks everything that does not depend on the image size: an even number of integer
    tokens, starts >= 1, lengths >= 1, runs in increasing order and not overlapping.
    """
    tokens = rle.split()
    if not tokens:  # most rows of a 2019-layout table: no numpy for them
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(tokens) % 2:
        raise RLEError(f"odd number of tokens ({len(tokens)}): expected 'start length' pairs")
    values = _integers(tokens, rle)
    starts, lengths = values[::2], values[1::2]
    _check_positive(starts, "start", 1)
    _check_positive(lengths, "length", 1)
    ends = starts + lengths - 1
    backwards = np.flatnonzero(starts[1:] < starts[:-1])
    if backwards.size:
        i = backwards[0] + 1
        raise RLEError(f"runs out of order: run {i + 1} starts at {starts[i]}, before run {i} at {starts[i - 1]}")
    overlapping = np.flatnonzero(starts[1:] <= ends[:-1])
    if overlapping.size:
        i = overlapping[0] + 1
        raise RLEError(f"overlapping runs: run {i + 1} starts at {starts[i]}, inside run {i} ending at {ends[i - 1]}")
    return starts, lengths


def decode(rle: str, shape: tuple[int, int]) -> np.ndarray:
    """Decode a run-length string into a bool mask of ``shape`` (H, W); ``""`` gives an empty mask."""
    height, width = shape
    starts, lengths = parse(rle)
    size = height * width
    if starts.size and starts[-1] + lengths[-1] - 1 > size:
        raise RLEError(
            f"run '{starts[-1]} {lengths[-1]}' ends at pixel {starts[-1] + lengths[-1] - 1}, "
            f"past the end of a {height}x{width} image ({size} pixels)"
        )
    flat = np.zeros(size, dtype=bool)
    # Index of every foreground pixel: each run's 0-indexed start, repeated over its length,
    # plus the pixel's position inside the run (a running count reset at each run).
    offsets = np.repeat(starts - 1 - (np.cumsum(lengths) - lengths), lengths)
    flat[offsets + np.arange(offsets.size)] = True
    return flat.reshape(width, height).T


def _check_positive(values: np.ndarray, name: str, minimum: int) -> None:
    bad = np.flatnonzero(values < minimum)
    if bad.size:
        raise RLEError(f"{name} {values[bad[0]]} in run {bad[0] + 1} is below {minimum}")


def _integers(tokens: list[str], text: str) -> np.ndarray:
    """Tokens -> int64, accepting only plain decimal integers: numpy (like int()) would also take
    "1_000", "+3" or non-ASCII digits, which no encoder writes. Those are looked for in the whole
    string at C speed; a token by token search runs only when something is wrong."""
    try:
        if not text.isascii() or "_" in text or "+" in text:
            raise ValueError
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not _INTEGER.fullmatch(t)), None)
        if bad is not None:
            raise RLEError(f"non-integer token {bad!r}") from None
        values = None  # integers, but too large for int64
    if values is None or values.max() >= MAX_PIXEL or values.min() <= -MAX_PIXEL:
        big = next(t for t in tokens if abs(int(t)) >= MAX_PIXEL)
        raise RLEError(
            f"number {big[:20]}{'...' if len(big) > 20 else ''} is out of range (no image has {MAX_PIXEL:.0e} pixels)"
        )
    return values
