"""Score a submission against the truth, and print scores as people read them.

The competition's mean Dice averages over every (image, class) pair of a fixed image set, so
the score depends on that set: the long layout lists only images with defects, and a clean
image scores 1 per class. The set therefore comes from an explicit source (an image folder or
a sample submission), or from both files naming the same images; a prediction that names
other images, or lacks some, is refused rather than quietly scored over a different set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from steelseg.core.metrics import DiceAccumulator, Scores
from steelseg.errors import SteelsegError
from steelseg.files.annotations import Annotations, read_annotations
from steelseg.files.images import require_images

SEVERSTAL_SHAPE = (256, 1600)
SEVERSTAL_NUM_CLASSES = 4


class ScoreError(SteelsegError, ValueError):
    """A truth, prediction and image set that cannot be scored together; the message names which."""


@dataclass(frozen=True)
class ImageSet:
    """The image ids a submission is scored over, in order, and where they came from (for messages)."""

    image_ids: list[str]
    source: str  # e.g. "image folder data/train_images"


def read_image_set(
    images_dir: str | os.PathLike | None = None, sample_submission: str | os.PathLike | None = None
) -> ImageSet | None:
    """The image set given by a folder (its image file names) or a sample submission (the image
    ids it lists); None when neither is given. An empty set is an error."""
    if images_dir is not None and sample_submission is not None:
        raise ScoreError("give the image set once: --images DIR or --sample-submission CSV, not both")
    if images_dir is not None:
        return ImageSet([path.name for path in require_images(images_dir)], f"image folder {images_dir}")
    if sample_submission is not None:
        image_ids = read_annotations(sample_submission).image_ids
        if not image_ids:
            raise ScoreError(f"{sample_submission}: sample submission lists no images")
        return ImageSet(image_ids, f"sample submission {sample_submission}")
    return None


def resolve_image_set(truth: Annotations, pred: Annotations, image_set: ImageSet | None = None) -> ImageSet:
    """The image set to score over: ``image_set`` if given, else the one both tables name.

    Images of the set absent from the truth are clean (that is what the long layout means);
    truth images outside the set are an error, since the set would silently drop defects.
    """
    if image_set is None:
        image_set = _agreed_image_set(truth, pred)
    if not image_set.image_ids:
        raise ScoreError(f"no images to score in {image_set.source}")
    _refuse_images_outside(truth, image_set)
    return image_set


def check_prediction(pred: Annotations, image_set: ImageSet, allow_missing: bool = False) -> list[str]:
    """Refuse a prediction that names images outside the set, or lacks images of it; with
    ``allow_missing`` the lacking images count as empty predictions and a warning says how many.

    Returns the warnings (one line each).
    """
    _refuse_empty_prediction(pred)
    _refuse_images_outside(pred, image_set)
    missing = _outside(image_set.image_ids, set(pred.image_ids))
    if not missing:
        return []
    lacks = f"{pred.source}: lacks {len(missing)} of the {len(image_set.image_ids)} images of {image_set.source}"
    if not allow_missing:
        raise ScoreError(f"{lacks}, first {missing[0]} (--allow-missing scores them as empty predictions)")
    return [f"{lacks}; scored them as empty predictions"]


def score_annotations(
    truth: Annotations,
    pred: Annotations,
    num_classes: int,
    shape: tuple[int, int],
    image_ids: list[str],
) -> Scores:
    """Competition and dataset-level scores of ``pred`` over ``image_ids``: the set is always
    given, never inferred from the rows a table happens to list (see ``resolve_image_set``).

    An image of the set absent from a table has no defect there; masks are decoded at
    ``shape`` (H, W), which also checks their bounds.
    """
    truth.check_classes(num_classes)
    pred.check_classes(num_classes)
    accumulator = DiceAccumulator(num_classes)
    for image_id in image_ids:
        accumulator.update(pred.masks(image_id, num_classes, shape), truth.masks(image_id, num_classes, shape))
    return accumulator.result()


def score_files(
    truth_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    shape: tuple[int, int] = SEVERSTAL_SHAPE,
    num_classes: int = SEVERSTAL_NUM_CLASSES,
    image_set: ImageSet | None = None,
    allow_missing: bool = False,
) -> tuple[Scores, list[str]]:
    """Read both tables, check them against the image set (see ``resolve_image_set`` and
    ``check_prediction``) and score ``num_classes`` classes of ``shape`` (H, W) masks.

    Returns the scores and the warnings (one line each). Class ids outside 1..num_classes in
    either table are an error naming its file and line.
    """
    _check_num_classes(num_classes)
    truth, pred = read_annotations(truth_path, num_classes), read_annotations(pred_path, num_classes)
    _refuse_empty_prediction(pred)  # before the set is resolved, which would blame a mismatch
    image_set = resolve_image_set(truth, pred, image_set)
    warnings = check_prediction(pred, image_set, allow_missing)
    return score_annotations(truth, pred, num_classes, shape, image_set.image_ids), warnings


def screen_files(
    truth_path: str | os.PathLike,
    scores_path: str | os.PathLike,
    num_classes: int = SEVERSTAL_NUM_CLASSES,
    image_set: ImageSet | None = None,
    allow_missing: bool = False,
):
    """The screening report of a class-scores CSV (``class_scores.py``) against the truth: a
    class is present in a true image when the truth has a mask for it. The image set is
    resolved as for ``score_files``; with ``allow_missing`` an image the scores lack counts as
    scored 0, not present. Returns the report and the warnings."""
    from steelseg.core.screening import screening_report
    from steelseg.files.class_scores import read_class_scores

    _check_num_classes(num_classes)
    truth, listed = read_annotations(truth_path, num_classes), read_class_scores(scores_path, num_classes)
    image_set = resolve_image_set(truth, listed, image_set)
    warnings = check_prediction(listed, image_set, allow_missing)
    row = {image_id: i for i, image_id in enumerate(listed.image_ids)}
    scores = np.zeros((len(image_set.image_ids), num_classes))
    flags = np.zeros(scores.shape, bool)
    labels = np.zeros(scores.shape, bool)
    for n, image_id in enumerate(image_set.image_ids):
        if image_id in row:
            scores[n], flags[n] = listed.scores[row[image_id]], listed.present[row[image_id]]
        labels[n] = [bool(truth.get(image_id, c)) for c in range(1, num_classes + 1)]
    return screening_report(scores, labels, flags=flags), warnings


def format_scores(scores: Scores, class_names: list[str], baseline: Scores | None = None) -> str:
    """A table: per class the competition Dice, dataset Dice and IoU; the mean last."""
    header = f"{'class':<14}{'dice':>8}{'set dice':>10}{'set IoU':>9}"
    if baseline is not None:
        header += f"{'all-empty':>11}"
    lines = [header]
    for i, name in enumerate(class_names):
        line = (
            f"{f'{i + 1} {name}'.strip():<14}{scores.class_dice[i]:>8.4f}"
            f"{scores.dataset_dice[i]:>10.4f}{scores.dataset_iou[i]:>9.4f}"
        )
        if baseline is not None:
            line += f"{baseline.class_dice[i]:>11.4f}"
        lines.append(line)
    mean = f"{'mean':<14}{scores.mean_dice:>8.4f}{np.mean(scores.dataset_dice):>10.4f}{scores.mean_iou:>9.4f}"
    if baseline is not None:
        mean += f"{baseline.mean_dice:>11.4f}"
    lines.append(mean)
    lines.append(f"({scores.num_images} images; 'dice' is the competition's mean over (image, class) pairs)")
    return "\n".join(lines)


def _agreed_image_set(truth: Annotations, pred: Annotations) -> ImageSet:
    # Without an explicit set only two tables naming the same images define one; anything else
    # (a long-layout truth, a partial prediction) would score over whichever rows a file lists.
    only_truth = _outside(truth.image_ids, set(pred.image_ids))
    only_pred = _outside(pred.image_ids, set(truth.image_ids))
    if only_truth or only_pred:
        sides = ((only_truth, truth), (only_pred, pred))
        examples = [f"{ids[0]} only in {table.source}" for ids, table in sides if ids]
        raise ScoreError(
            f"{truth.source} names {len(truth.image_ids)} images and {pred.source} {len(pred.image_ids)}, "
            f"not the same ones (e.g. {'; '.join(examples)}): pass --images DIR or --sample-submission CSV "
            "to say which images are scored"
        )
    return ImageSet(list(truth.image_ids), "the images both tables name")


def _check_num_classes(num_classes: int) -> None:
    if num_classes < 1:
        raise ScoreError(f"the number of classes must be at least 1, got {num_classes}")


def _refuse_empty_prediction(pred: Annotations) -> None:
    if not pred.image_ids:
        raise ScoreError(f"{pred.source}: lists no images (only a header)")


def _refuse_images_outside(table: Annotations, image_set: ImageSet) -> None:
    outside = _outside(table.image_ids, set(image_set.image_ids))
    if outside:
        raise ScoreError(
            f"{table.source}: {len(outside)} image(s) not in {image_set.source} "
            f"({len(image_set.image_ids)} images), e.g. {outside[0]}"
        )


def _outside(image_ids: list[str], allowed: set[str]) -> list[str]:
    return [image_id for image_id in image_ids if image_id not in allowed]
