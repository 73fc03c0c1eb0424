"""How unsure a model is of an image, from the numbers the Predictor already gives: its class
scores against their presence thresholds, and its pixel probabilities against the pixel
threshold. Pure numpy. ``steelseg predict --review N`` ranks every image by it and hands the N
highest to people (``inference.review``).

Per class c of an image (all terms in [0, 1]):

- **class doubt** ``1 - |score - t| / max(t, 1 - t)``, t the class's presence threshold (what
  says whether the class is present, ``Predictor.presence_threshold``): 1 for a score on the
  threshold, 0 for a score of 0 or 1 on the far side of it;
- **pixel doubt** ``near / (near + sure + FLOOR_PIXELS)``: ``near`` counts the pixels whose
  probability lies within ``BAND`` of the class's pixel threshold (the mask's edge could go
  either way there), ``sure`` those above the threshold by more than ``BAND``. A mask that is
  mostly near the threshold scores near 1, a crisp one near 0 (only its rim is near), and
  ``FLOOR_PIXELS`` keeps a handful of stray pixels on a clean image from counting as doubt;
- **doubt** the mean of the two.

An image's **uncertainty** is the largest doubt of its classes, and its reason that class (the
lowest class id on a tie). Images rank by uncertainty, highest first, ties by image id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BAND = 0.1  # a pixel probability this close to the pixel threshold is a doubtful pixel
FLOOR_PIXELS = 100  # a region of doubtful pixels counts in full only when large against this


@dataclass(frozen=True)
class Counts:
    """One image's numbers, per class: ``scores`` (C,) float32 class scores, ``near`` and
    ``sure`` (C,) int64 pixel counts (module docstring), and the image's (H, W)."""

    scores: np.ndarray
    near: np.ndarray
    sure: np.ndarray
    shape: tuple[int, int]


def pixel_counts(pixels: np.ndarray, pixel_threshold: np.ndarray, band: float = BAND) -> tuple[np.ndarray, np.ndarray]:
    """(C, H, W) pixel probabilities, (C,) pixel thresholds -> (near, sure): (C,) int64 counts of
    the pixels within ``band`` of the threshold and of those above threshold + ``band``."""
    threshold = np.asarray(pixel_threshold, dtype=np.float32)[:, None, None]
    offset = pixels - threshold
    near = np.count_nonzero(np.abs(offset) <= band, axis=(1, 2))
    sure = np.count_nonzero(offset > band, axis=(1, 2))
    return near.astype(np.int64), sure.astype(np.int64)


def class_doubt(scores: np.ndarray, threshold: np.ndarray) -> np.ndarray:
    """(..., C) class scores, (C,) presence thresholds -> (..., C) float64 in [0, 1]."""
    threshold = np.asarray(threshold, dtype=np.float64)
    reach = np.maximum(threshold, 1 - threshold)  # the farthest a score can be from the threshold
    return np.clip(1 - np.abs(scores - threshold) / reach, 0, 1)


def pixel_doubt(near: np.ndarray, sure: np.ndarray, floor: int = FLOOR_PIXELS) -> np.ndarray:
    """(..., C) counts -> (..., C) float64 in [0, 1]."""
    return near / (near + sure + floor).astype(np.float64)


def doubt(counts: Counts, presence_threshold: np.ndarray, floor: int = FLOOR_PIXELS) -> np.ndarray:
    """(C,) float64: each class's doubt, the mean of its class and pixel doubts."""
    return (class_doubt(counts.scores, presence_threshold) + pixel_doubt(counts.near, counts.sure, floor)) / 2


def most_uncertain(uncertainty: dict[str, float], count: int) -> list[str]:
    """The ``count`` image ids of highest uncertainty, highest first, ties by image id."""
    return sorted(uncertainty, key=lambda image_id: (-uncertainty[image_id], image_id))[:count]
