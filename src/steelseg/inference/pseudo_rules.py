"""The two rules that pick pseudo-labels, pure numpy (``inference.pseudo`` applies them).

- ``first``: 1st place. Every class score is above ``hi`` (0.95) or below ``lo`` (0.05), and
  the masks agree: a class scored above ``hi`` has a mask, one scored below ``lo`` has none
  (1,135 of 5,506 test images in their second round).
- ``tenth``: 10th place. Nearly every pixel of every class is confident (probability below
  ``low`` 0.2 or above ``high`` 0.8), where the uncertain rim that every predicted defect has
  (label borders are arbitrary) is forgiven: confident defect regions are grown by ``border``
  px before counting.
- ``both``: an image must pass both.
"""

from __future__ import annotations

import numpy as np

from steelseg.errors import SteelsegError

RULES = ("first", "tenth", "both")
HI, LO = 0.95, 0.05  # 1st place's class-score thresholds
LOW, HIGH = 0.2, 0.8  # 10th place's confident-pixel thresholds
BORDER = 3  # px of uncertain rim forgiven around a confident defect region
# At least this share of each class's pixels must be confident: on a 256x1600 strip 0.995
# leaves 2,048 uncertain pixels, about the smallest defect the 1st place kept for class 4
# (min area 2,000 px). An uncertain patch as large as a defect worth keeping is a real doubt.
MIN_CONFIDENT_SHARE = 0.995


class PseudoError(SteelsegError, ValueError):
    """Pseudo-labels that cannot be made: a model without masks, bad thresholds, an image
    missing from the ranking."""


def first_place_rule(scores: np.ndarray, mask_present: np.ndarray, hi: float = HI, lo: float = LO) -> np.ndarray:
    """(N, C) float class scores and (N, C) bool "the post-processed mask is not empty" ->
    (N,) bool: every class is sure (score > ``hi`` or < ``lo``; the bounds themselves are not)
    and its mask agrees (present above ``hi``, absent below ``lo``)."""
    _check_pair("hi", hi, "lo", lo)
    scores = np.asarray(scores, dtype=np.float64)
    mask_present = np.asarray(mask_present, dtype=bool)
    if scores.ndim != 2 or scores.shape != mask_present.shape:
        raise ValueError(
            f"expected (N, C) scores and mask presence of one shape, got {scores.shape} and {mask_present.shape}"
        )
    sure_defect, sure_clean = scores > hi, scores < lo
    agrees = np.where(sure_defect, mask_present, sure_clean & ~mask_present)
    return agrees.all(axis=1)


def confident_share(pixels: np.ndarray, low: float = LOW, high: float = HIGH, border: int = BORDER) -> np.ndarray:
    """(C, H, W) float probabilities -> (C,) float64: each class's share of confident pixels.

    A pixel is confident below ``low`` or above ``high``, or when it lies within ``border`` px
    (a square: rows, columns and diagonals) of a pixel above ``high``. Only defect regions are
    grown: growing the confident background as well would forgive every uncertain structure
    thinner than 2 x ``border`` px, such as a faint crack nobody is sure of."""
    _check_pair("high", high, "low", low)
    _check_border(border)
    pixels = np.asarray(pixels)
    if pixels.ndim != 3:
        raise ValueError(f"expected (C, H, W) probabilities, got shape {pixels.shape}")
    sure_defect = pixels > high
    confident = sure_defect | (pixels < low)
    if border > 0:
        import cv2  # here, not at the top: only the tenth-place rule needs OpenCV

        kernel = np.ones((2 * border + 1, 2 * border + 1), np.uint8)
        for c in range(len(pixels)):
            confident[c] |= cv2.dilate(sure_defect[c].view(np.uint8), kernel).view(bool)
    return confident.reshape(len(pixels), -1).mean(axis=1, dtype=np.float64)


def tenth_place_rule(shares: np.ndarray, min_share: float = MIN_CONFIDENT_SHARE) -> np.ndarray:
    """(N, C) ``confident_share`` of each image -> (N,) bool: every class at least ``min_share``."""
    _check_share(min_share)
    shares = np.asarray(shares, dtype=np.float64)
    if shares.ndim != 2:
        raise ValueError(f"expected (N, C) confident shares, got shape {shares.shape}")
    return (shares >= min_share).all(axis=1)


def _check_pair(upper_name: str, upper: float, lower_name: str, lower: float) -> None:
    if not 0 <= lower < upper <= 1:
        raise PseudoError(
            f"need 0 <= {lower_name} < {upper_name} <= 1, got {lower_name} {lower} and {upper_name} {upper}"
        )


def _check_border(border: int) -> None:
    if isinstance(border, bool) or not isinstance(border, (int, np.integer)) or border < 0:
        raise PseudoError(f"border must be a whole number of px >= 0, got {border!r}")


def _check_share(min_share: float) -> None:
    if not 0 < min_share <= 1:
        raise PseudoError(f"the confident share must be in (0, 1], got {min_share}")


def check_settings(hi: float, lo: float, low: float, high: float, border: int, min_share: float) -> None:
    _check_pair("hi", hi, "lo", lo)
    _check_pair("high", high, "low", low)
    _check_border(border)
    _check_share(min_share)
