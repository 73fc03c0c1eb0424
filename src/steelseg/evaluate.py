"""Score a submission against the truth, and print scores as people read them."""

from __future__ import annotations

import os

import numpy as np

from steelseg.annotations import Annotations, read_annotations
from steelseg.metrics import DiceAccumulator, Scores

SEVERSTAL_SHAPE = (256, 1600)


def score_annotations(
    truth: Annotations,
    pred: Annotations,
    num_classes: int,
    shape: tuple[int, int],
    image_ids: list[str] | None = None,
) -> Scores:
    """Competition and dataset-level scores of ``pred`` over ``image_ids`` (default: every image
    named by either table).

    The long layout lists only images with defects, so an image absent from one table has no
    defect there; masks are decoded at ``shape`` (H, W), which also checks their bounds.
    """
    truth.check_classes(num_classes)
    pred.check_classes(num_classes)
    accumulator = DiceAccumulator(num_classes)
    for image_id in image_ids if image_ids is not None else _union(truth.image_ids, pred.image_ids):
        accumulator.update(pred.masks(image_id, num_classes, shape), truth.masks(image_id, num_classes, shape))
    return accumulator.result()


def score_files(
    truth_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    shape: tuple[int, int] = SEVERSTAL_SHAPE,
    num_classes: int | None = None,
) -> tuple[Scores, int]:
    """Read both tables and score them; the class count defaults to the largest id either uses."""
    truth, pred = read_annotations(truth_path), read_annotations(pred_path)
    num_classes = num_classes or max(truth.class_ids | pred.class_ids | {1})
    return score_annotations(truth, pred, num_classes, shape), num_classes


def format_scores(scores: Scores, class_names: list[str], baseline: Scores | None = None) -> str:
    """A table: per class the competition Dice, dataset Dice and IoU; the mean last."""
    header = f"{'class':<14}{'dice':>8}{'set dice':>10}{'set IoU':>9}"
    if baseline is not None:
        header += f"{'all-empty':>11}"
    lines = [header]
    for i, name in enumerate(class_names):
        line = f"{f'{i + 1} {name}'.strip():<14}{scores.class_dice[i]:>8.4f}{scores.dataset_dice[i]:>10.4f}{scores.dataset_iou[i]:>9.4f}"
        if baseline is not None:
            line += f"{baseline.class_dice[i]:>11.4f}"
        lines.append(line)
    mean = f"{'mean':<14}{scores.mean_dice:>8.4f}{np.mean(scores.dataset_dice):>10.4f}{scores.mean_iou:>9.4f}"
    if baseline is not None:
        mean += f"{baseline.mean_dice:>11.4f}"
    lines.append(mean)
    lines.append(f"({scores.num_images} images; 'dice' is the competition's mean over (image, class) pairs)")
    return "\n".join(lines)


def _union(first: list[str], second: list[str]) -> list[str]:
    seen = set(first)
    return list(first) + [i for i in second if i not in seen]
