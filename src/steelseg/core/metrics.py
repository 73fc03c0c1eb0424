"""Scores for defect masks: the competition's mean Dice and the dataset-level Dice / IoU of papers.

Pure numpy. Masks are bool arrays shaped (C, H, W) (any trailing pixel shape works), one
channel per class, for one image at a time, so that a whole test set never sits in memory.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice of two bool masks of one (image, class) pair; both empty scores 1, as on Kaggle."""
    total = int(pred.sum()) + int(truth.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, truth).sum()) / total


def pair_dice(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Dice of every class channel of one image: (C, ...) bool x 2 -> (C,) float64."""
    pred = pred.reshape(pred.shape[0], -1)
    truth = truth.reshape(truth.shape[0], -1)
    inter, pred_area, truth_area = _counts(pred, truth)
    return dice_from_counts(inter, pred_area, truth_area)


def dice_from_counts(inter: np.ndarray, pred_area: np.ndarray, truth_area: np.ndarray) -> np.ndarray:
    """Dice from pixel counts, element-wise; a pair with nothing predicted and nothing true scores 1."""
    total = pred_area + truth_area
    return np.where(total == 0, 1.0, 2.0 * inter / np.maximum(total, 1))


@dataclass(frozen=True)
class Scores:
    """What ``DiceAccumulator.result`` reports; per-class arrays are indexed by class id - 1."""

    mean_dice: float  # the competition metric: mean over every (image, class) pair
    class_dice: np.ndarray  # competition Dice averaged over images, per class
    dataset_dice: np.ndarray  # 2 sum|P n T| / (sum|P| + sum|T|) over the whole set, per class
    dataset_iou: np.ndarray  # sum|P n T| / sum|P u T| over the whole set, per class
    num_images: int

    @property
    def mean_iou(self) -> float:
        return float(self.dataset_iou.mean())

    def as_dict(self) -> dict:
        return {
            "mean_dice": self.mean_dice,
            "class_dice": self.class_dice.tolist(),
            "dataset_dice": self.dataset_dice.tolist(),
            "dataset_iou": self.dataset_iou.tolist(),
            "mean_iou": self.mean_iou,
            "num_images": self.num_images,
        }


class DiceAccumulator:
    """Streams (prediction, truth) mask pairs image by image and reports ``Scores``.

    Dataset-level Dice and IoU of a class that is absent from both truth and prediction are 1,
    the same convention as the competition's empty-vs-empty pair.
    """

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self._dice_sum = np.zeros(num_classes)
        self._inter = np.zeros(num_classes, dtype=np.int64)
        self._pred = np.zeros(num_classes, dtype=np.int64)
        self._truth = np.zeros(num_classes, dtype=np.int64)
        self.num_images = 0

    def update(self, pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
        """Add one image's masks, (C, H, W) bool each; returns that image's per-class Dice."""
        if pred.shape != truth.shape or pred.shape[0] != self.num_classes:
            raise ValueError(f"prediction {pred.shape} and truth {truth.shape} must both be ({self.num_classes}, H, W)")
        inter, pred_area, truth_area = _counts(pred.reshape(self.num_classes, -1), truth.reshape(self.num_classes, -1))
        image_dice = dice_from_counts(inter, pred_area, truth_area)
        self._dice_sum += image_dice
        self._inter += inter
        self._pred += pred_area
        self._truth += truth_area
        self.num_images += 1
        return image_dice

    def result(self) -> Scores:
        if self.num_images == 0:
            raise ValueError("no images were scored")
        class_dice = self._dice_sum / self.num_images
        union = self._pred + self._truth - self._inter
        return Scores(
            mean_dice=float(class_dice.mean()),
            class_dice=class_dice,
            dataset_dice=dice_from_counts(self._inter, self._pred, self._truth),
            dataset_iou=np.where(union == 0, 1.0, self._inter / np.maximum(union, 1)),
            num_images=self.num_images,
        )


def _counts(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pred = pred.astype(bool, copy=False)
    truth = truth.astype(bool, copy=False)
    inter = np.logical_and(pred, truth).sum(axis=1)
    return inter, pred.sum(axis=1), truth.sum(axis=1)
