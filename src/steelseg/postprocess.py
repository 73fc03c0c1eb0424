"""Turn per-class defect probabilities into masks: pixel threshold, then minimum area.

Pure numpy. ``min_area`` drops a class's whole mask when fewer pixels than that survive the
threshold: false positives on clean images cost a full point of Dice, so small, unsure
predictions are worth less than none (the public kernels' 600/600/1000/2000 px rule).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

# A min_area no mask reaches: the class is never predicted. Tuning picks it for a class whose
# predictions do worse on validation than predicting nothing at all.
NEVER = 2**31 - 1


@dataclass(frozen=True)
class PostProcess:
    pixel_threshold: np.ndarray  # (C,) float: a pixel is a defect when probability >= this
    min_area: np.ndarray  # (C,) int: fewer defect pixels than this -> the class mask is emptied

    @classmethod
    def uniform(cls, num_classes: int, pixel_threshold: float | list[float], min_area: int | list[int]) -> "PostProcess":
        """Per-class parameters from a scalar (same for every class) or a per-class list."""
        return cls(
            per_class(pixel_threshold, num_classes, "pixel_threshold", float),
            per_class(min_area, num_classes, "min_area", int),
        )

    @property
    def num_classes(self) -> int:
        return len(self.pixel_threshold)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        """(C, H, W) float probabilities -> (C, H, W) bool masks."""
        if probs.shape[0] != self.num_classes:
            raise ValueError(f"expected {self.num_classes} class channels, got {probs.shape[0]}")
        thresholds = thresholds_for(probs.dtype, self.pixel_threshold)
        masks = probs >= thresholds.reshape(-1, *([1] * (probs.ndim - 1)))
        areas = np.count_nonzero(masks.reshape(self.num_classes, -1), axis=1)  # 10x a bool sum
        masks[areas < self.min_area] = False
        return masks

    def to_json(self) -> str:
        return json.dumps(
            {"pixel_threshold": self.pixel_threshold.tolist(), "min_area": self.min_area.tolist()}, indent=2
        )

    @classmethod
    def from_json(cls, text: str, num_classes: int | None = None) -> "PostProcess":
        """Parse and check ``to_json``'s text: one value per class (``num_classes`` when given),
        thresholds in [0, 1], minimum areas whole numbers >= 0. A ValueError says what is wrong."""
        try:
            data = json.loads(text)
            thresholds, areas = data["pixel_threshold"], data["min_area"]
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"not a post-processing file ({type(err).__name__}: {err})") from None
        count = len(thresholds) if num_classes is None and isinstance(thresholds, list) else num_classes
        for name, values in (("pixel_threshold", thresholds), ("min_area", areas)):
            if not isinstance(values, list) or len(values) != count:
                raise ValueError(f"{name} must list one value per class ({count}), got {values!r}")
        check_probabilities("pixel_threshold", thresholds)
        for i, value in enumerate(areas):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= NEVER:
                raise ValueError(f"min_area[{i}] = {value!r} is not a whole number of pixels >= 0")
        return cls.uniform(count, thresholds, areas)


def check_probabilities(name: str, values: list) -> None:
    """A ValueError naming the first of ``values`` (read from JSON) that is not a number in [0, 1]."""
    for i, value in enumerate(values):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{name}[{i}] = {value!r} is not a probability in [0, 1]")


def thresholds_for(dtype: np.dtype, thresholds: np.ndarray) -> np.ndarray:
    """``thresholds`` (float64) in ``dtype`` such that ``p >= result`` equals ``p >= thresholds``
    for every ``p`` of that dtype: the smallest ``dtype`` value not below each threshold.

    Comparing float32 probabilities with float64 thresholds makes numpy convert every pixel to
    float64 first (5x slower on a 256x1600 strip); plain rounding to float32 could round a
    threshold down and admit a probability just below it.
    """
    dtype = np.dtype(dtype)
    if dtype == np.float64 or dtype.kind != "f":
        return np.asarray(thresholds, dtype=np.float64)
    rounded = np.asarray(thresholds, dtype=np.float64).astype(dtype)
    below = rounded.astype(np.float64) < thresholds
    return np.where(below, np.nextafter(rounded, dtype.type(np.inf)), rounded).astype(dtype)


def per_class(value, num_classes: int, name: str, kind=float) -> np.ndarray:
    """A config value (a scalar for every class, or a list of one per class) as (C,) ``kind``."""
    values = np.asarray(value if isinstance(value, (list, tuple, np.ndarray)) else [value] * num_classes, dtype=kind)
    if values.shape != (num_classes,):
        raise ValueError(f"{name} needs one value per class ({num_classes}), got {len(values)}")
    return values
