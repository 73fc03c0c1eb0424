"""Long strips in overlapping windows: where the windows lie and how they are blended. Pure numpy.

A strip wider than the window (a continuous coil, 256 x 16,000 px) is cut along its width into
windows of the image's full height; each goes through the networks as an image of its own, so
their memory is bounded by the window, not the strip. The windows' pixel probabilities are put
back as a weighted mean: each window's weight ramps up from its edges across the overlap, so a
pixel near a window's edge, where the network saw zero padding instead of the steel beyond, counts
least wherever a neighbour saw it from inside, and the blend changes smoothly from one window to
the next (no seam where a defect crosses a border). Dividing by the accumulated weight makes the
weights' sum irrelevant: every pixel gets the weighted mean of the windows that cover it.

No torch here: an ONNX-only deployment windows its strips too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# Ramp shapes over t in (0, 1]: the weight of a pixel t of the way from a window's edge into the
# overlap. "hann" (sin^2) has zero slope at both ends, so the blend has no kink; both give weights
# that sum to exactly 1 where two windows overlap by exactly the overlap.
# Wider images are predicted in windows this wide: the Severstal strips' width, which the networks
# were trained on, so 256x1600 images stay whole (exactly as without windows).
DEFAULT_WINDOW = 1600
# 8 cells of a stride-32 network's deepest feature map: near a window's edge its deepest features
# mix in zero padding; 256 px keeps the blend's weight there small, for 19% more windows than none.
DEFAULT_OVERLAP = 256

RAMPS = {
    "linear": lambda t: t,
    "hann": lambda t: np.sin(np.pi / 2 * t) ** 2,
}

Predict = Callable[[np.ndarray], tuple[np.ndarray | None, np.ndarray | None]]


@dataclass(frozen=True)
class Windows:
    """The windows along one image width: ``starts`` (K,) int64, the first column of each;
    ``width``, every window's width; ``weights`` (width,) float32, each column's weight."""

    starts: np.ndarray
    width: int
    weights: np.ndarray

    def coverage(self, image_width: int) -> np.ndarray:
        """(image_width,) float32: the summed weight of the windows over each column (> 0)."""
        total = np.zeros(image_width, np.float32)
        for start in self.starts:
            total[start : start + self.width] += self.weights
        return total


def window_unit(divisor: int, input_scale: float) -> int:
    """The smallest image width (px) that a network scaling its input by ``input_scale`` sees
    as a multiple of its input ``divisor``. Windows this wide need no padding inside the network,
    and windows that start at multiples of it meet the network's pooling grid where the whole
    image does, so away from its edges a window sees exactly what the whole image sees."""
    scale = Fraction(input_scale).limit_denominator(1000)
    # u * p / q a multiple of d  <=>  u a multiple of d * q / gcd(p, d * q)
    return divisor * scale.denominator // math.gcd(scale.numerator, divisor * scale.denominator)


def positions(image_width: int, window: int, overlap: int, align: int = 1) -> np.ndarray:
    """(K,) int64 first columns of windows ``window`` px wide over an image ``image_width`` wide:
    one window at 0 when the image is no wider; else steps of ``window - overlap`` rounded down to
    a multiple of ``align`` (so every pair overlaps by at least ``overlap``), and a last window
    flush with the image's right edge (it may overlap its neighbour by more)."""
    step = (window - overlap) // align * align
    if step < 1 or overlap < 0:
        raise ValueError(f"windows of {window} px overlapping by {overlap} px, aligned to {align} px, cannot advance")
    if image_width <= window:
        return np.zeros(1, np.int64)
    last = image_width - window
    return np.append(np.arange(0, last, step, dtype=np.int64), np.int64(last))


def ramp(width: int, overlap: int, shape: str = "hann") -> np.ndarray:
    """(width,) float32 weights of one window's columns: up from each edge over ``overlap`` px,
    1 in between. Never 0 (the outermost column gets ramp(1 / (overlap + 1))): a column only one
    window covers still has a weight to divide by."""
    if shape not in RAMPS:
        raise ValueError(f"unknown ramp {shape!r}; choose one of {', '.join(RAMPS)}")
    from_edge = np.minimum(np.arange(width), np.arange(width)[::-1]) + 1  # 1 at either edge column
    t = np.minimum(from_edge / (overlap + 1), 1.0)
    return RAMPS[shape](t).astype(np.float32)


def layout(image_width: int, window: int, overlap: int, align: int = 1, shape: str = "hann") -> Windows:
    """``positions`` and ``ramp`` together; no window is wider than the image."""
    width = min(window, image_width)
    return Windows(positions(image_width, window, overlap, align), width, ramp(width, overlap, shape))


def predict_windows(
    images: np.ndarray, predict: Predict, windows: Windows, batch_size: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(N, H, W) uint8 images through ``predict`` in windows, ``batch_size`` windows at a time ->
    (pixel probabilities (N, C, H, W) float32 or None, class-head probabilities (N, C) or None).

    ``predict``: (b, H, width) uint8 -> ((b, C, H, width) float32 or None, (b, C) or None).
    Pixels are the windows' weighted mean. Class heads are the max over an image's windows: a
    class is in a strip when it is in any part of it, and averaging would let a defect seen by one
    window of twelve vanish. NaN (a class no head predicts) stays NaN."""
    count, height, image_width = images.shape
    crops = [(i, int(start)) for i in range(count) for start in windows.starts]
    pixels = heads = None
    for first in range(0, len(crops), batch_size):
        part = crops[first : first + batch_size]
        batch_pixels, batch_heads = predict(
            np.stack([images[i, :, start : start + windows.width] for i, start in part])
        )
        if batch_pixels is not None:
            if pixels is None:
                pixels = np.zeros((count, batch_pixels.shape[1], height, image_width), np.float32)
            for j, (i, start) in enumerate(part):
                pixels[i, :, :, start : start + windows.width] += batch_pixels[j] * windows.weights
        if batch_heads is not None:
            if heads is None:
                heads = np.full((count, batch_heads.shape[1]), np.nan, np.float32)
            for j, (i, _) in enumerate(part):
                np.fmax(heads[i], batch_heads[j], out=heads[i])  # fmax: NaN only where every window has NaN
    if pixels is not None:
        pixels /= windows.coverage(image_width)
    return pixels, heads
