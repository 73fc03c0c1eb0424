"""The numbers behind the report pages. Pure numpy: arrays in, arrays out.

Per-image tables are (N images, C classes); a class is "present" in an image when its mask
has at least one pixel, the competition's meaning (an empty mask is "no defect").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def class_labels(class_names: list[str]) -> list[str]:
    """How pages name classes: ``"1 pits"``, or ``"1"`` where the name is only the id."""
    return [name if name == str(i) else f"{i} {name}" for i, name in enumerate(class_names, start=1)]


@dataclass(frozen=True)
class PresenceConfusion:
    """Per class (C,) int64: images where the class is present in truth and prediction (tp),
    only in the prediction (fp), only in the truth (fn), in neither (tn)."""

    tp: np.ndarray
    fp: np.ndarray
    fn: np.ndarray
    tn: np.ndarray

    @property
    def accuracy(self) -> np.ndarray:
        """(C,) share of images whose presence the prediction gets right."""
        total = self.tp + self.fp + self.fn + self.tn
        return (self.tp + self.tn) / np.maximum(total, 1)


def presence_confusion(truth_area: np.ndarray, pred_area: np.ndarray) -> PresenceConfusion:
    """(N, C) true and predicted mask areas (pixels) -> per-class presence confusion."""
    truth, pred = np.asarray(truth_area) > 0, np.asarray(pred_area) > 0
    if truth.shape != pred.shape:
        raise ValueError(f"expected areas of one (N, C) shape, got {truth.shape} and {pred.shape}")
    count = lambda a: np.count_nonzero(a, axis=0).astype(np.int64)  # noqa: E731
    return PresenceConfusion(count(truth & pred), count(~truth & pred), count(truth & ~pred), count(~truth & ~pred))


def defect_areas(areas: np.ndarray) -> list[np.ndarray]:
    """(N, C) mask areas -> per class, the areas of the images that have the class (> 0 pixels), in image order."""
    areas = np.asarray(areas)
    return [areas[:, c][areas[:, c] > 0] for c in range(areas.shape[1])]


def area_bins(*area_lists: np.ndarray, count: int = 20) -> np.ndarray:
    """Log-spaced histogram edges covering every area given (defects span 10 to 100k pixels:
    linear bins would put nearly all of them in the first bar), ``count`` + 1 of them, at least
    a factor of 10 apart from first to last (a log axis shorter than that has no readable ticks)."""
    values = np.concatenate([np.ravel(a) for a in area_lists] + [np.zeros(0)])
    values = values[values > 0]
    if values.size == 0:
        return np.geomspace(1.0, 10.0, count + 1)
    low, high = float(values.min()), float(values.max()) * 1.0001  # the top edge just above the largest area
    widen = np.sqrt(max(10.0 * low / high, 1.0))
    return np.geomspace(low / widen, high * widen, count + 1)


def worst_images(image_dice: np.ndarray, image_ids: list[str], n: int) -> list[int]:
    """Indices of the ``n`` images with the lowest mean Dice over classes (``image_dice`` (N, C)),
    worst first; ties in image-id order. Images scoring 1 (nothing wrong) are never listed."""
    mean = np.asarray(image_dice, dtype=float).mean(axis=1)
    order = sorted(range(len(image_ids)), key=lambda i: (mean[i], image_ids[i]))
    return [i for i in order if mean[i] < 1.0][: max(n, 0)]


def classes_per_image(presence: np.ndarray) -> np.ndarray:
    """(N, C) bool presence -> (C + 1,) int64: how many images hold 0, 1, ..., C classes."""
    presence = np.asarray(presence, dtype=bool)
    return np.bincount(presence.sum(axis=1), minlength=presence.shape[1] + 1).astype(np.int64)


def spread_pick(indices: list[int], k: int) -> list[int]:
    """Up to ``k`` of ``indices``, evenly spaced from first to last: examples from all over a
    data set (its file order often follows time or source), the same ones every time."""
    if k <= 0 or not indices:
        return []
    if len(indices) <= k:
        return list(indices)
    return [indices[round(j * (len(indices) - 1) / max(k - 1, 1))] for j in range(k)]
