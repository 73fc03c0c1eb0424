"""Screening: per-class screening thresholds on class scores, tuned and reported. Pure numpy.

A class is *present* in an image when its score is strictly above the class's screening
threshold (``screen_threshold``, stored in a run's gate.json; not the post-processing's
``head_threshold``, which gates masks on the class heads); an image with no class present is
*screened out* (segmentation need not run).
Thresholds are tuned for presence accuracy, which is the competition's mean Dice for an
(image, class) pair if every mask let through were perfect: a clean pair scores 1 when
screened, a defective pair 0. Ties go to the highest threshold, the most cautious; 1.0 (never
present) is always a candidate, so a class without positives is never flagged on every image.
"""

from __future__ import annotations

import json

import numpy as np
from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from steelseg.core.postprocess import check_probabilities

NEVER = 1.0  # scores are probabilities: none is strictly above 1


class ScreeningReport(BaseModel):
    """How well class scores tell defective from clean, per class, at the chosen thresholds."""

    model_config = ConfigDict(extra="forbid")

    # None: decisions read from a file, thresholds unknown. Reports written before the rename
    # (summary.json) call it label_threshold.
    screen_threshold: list[float] | None = Field(validation_alias=AliasChoices("screen_threshold", "label_threshold"))
    auc: list[float | None]  # ROC AUC; None when a class has no positives or no negatives
    precision: list[float | None]  # None when nothing is flagged
    recall: list[float | None]  # None when the class has no positives
    accuracy: list[float]  # share of images whose presence is right
    positives: list[int]  # images holding the class
    images: int
    screened_out: float  # share of all images with no class present
    clean_screened_out: float | None = None  # ... of the images without any defect (None: none clean)
    defective_screened_out: float | None = None  # ... of the images with a defect: lost to screening


# gate.json's key; files written by earlier versions use OLD_GATE_KEY
GATE_KEY = "screen_threshold"
OLD_GATE_KEY = "label_threshold"


def thresholds_to_json(thresholds: np.ndarray) -> str:
    """gate.json's text: ``{"screen_threshold": [one per class]}``."""
    return json.dumps({GATE_KEY: [float(t) for t in thresholds]}, indent=2)


def thresholds_from_json(text: str, num_classes: int) -> np.ndarray:
    """Parse and check gate.json (its key the old ``label_threshold`` too): one threshold in
    [0, 1] per class; a ValueError says what is wrong."""
    try:
        data = json.loads(text)
        key = OLD_GATE_KEY if isinstance(data, dict) and OLD_GATE_KEY in data and GATE_KEY not in data else GATE_KEY
        values = data[key]
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"not a screening-threshold file ({type(err).__name__}: {err})") from None
    if not isinstance(values, list) or len(values) != num_classes:
        raise ValueError(f"{key} must list one value per class ({num_classes}), got {values!r}")
    check_probabilities(key, values)
    return np.asarray(values, np.float64)


def present(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(N, C) scores -> (N, C) bool: the class is present when its score is above its threshold."""
    return np.asarray(scores) > np.asarray(thresholds, np.float64)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of one class: the chance that a random positive scores above a
    random negative, ties counting half (Mann-Whitney U over average ranks). None without both
    positives and negatives."""
    labels = np.asarray(labels, bool)
    positives, negatives = int(labels.sum()), int((~labels).sum())
    if positives == 0 or negatives == 0:
        return None
    from scipy.stats import rankdata  # scipy.stats takes a second to import: only when needed

    ranks = rankdata(np.asarray(scores, np.float64))
    return float((ranks[labels].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def candidate_thresholds(grid: list[float]) -> np.ndarray:
    """The grid, highest first, with ``NEVER`` added: ``argmax`` then picks the most cautious."""
    return np.unique(np.append(np.asarray(grid, np.float64), NEVER))[::-1]


def tune_screen_thresholds(
    scores: np.ndarray, labels: np.ndarray, grid: list[float], min_recall: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(N, C) scores and (N, C) bool labels -> per-class thresholds (C,) maximising presence
    accuracy, and that accuracy (C,).

    ``min_recall``: only thresholds that keep at least this share of a class's positives are
    candidates (a screen that must not lose defects); where none does, the lowest threshold
    of the grid. A class without positives has no recall to keep and is tuned as before."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    candidates = candidate_thresholds(grid)
    present = scores[None] > candidates[:, None, None]  # (T, N, C)
    accuracy = (present == labels[None]).mean(axis=1)  # (T, C)
    allowed = np.ones(accuracy.shape, bool)
    if min_recall is not None:
        positives = labels.sum(axis=0)
        recall = (present & labels[None]).sum(axis=1) / np.maximum(positives, 1)
        allowed = (recall >= min_recall) | (positives == 0)
        allowed[-1] |= ~allowed.any(axis=0)  # candidates run highest first: the last is the lowest
    pick = np.where(allowed, accuracy, -1.0).argmax(axis=0)  # first maximum = highest threshold
    columns = np.arange(scores.shape[1])
    return candidates[pick], accuracy[pick, columns]


def screening_report(
    scores: np.ndarray, labels: np.ndarray, thresholds: np.ndarray | None = None, flags: np.ndarray | None = None
) -> ScreeningReport:
    """AUC, precision, recall and accuracy per class at ``thresholds`` (or of the given
    presence ``flags``), and the share of images screened out."""
    scores, labels = np.asarray(scores, np.float64), np.asarray(labels, bool)
    if (thresholds is None) == (flags is None):
        raise ValueError("give the screening thresholds or the presence flags, one of the two")
    flags = present(scores, thresholds) if flags is None else np.asarray(flags, bool)
    true_pos = (flags & labels).sum(axis=0)
    flagged, positives = flags.sum(axis=0), labels.sum(axis=0)
    screened = ~flags.any(axis=1)
    clean = ~labels.any(axis=1)
    return ScreeningReport(
        screen_threshold=None if thresholds is None else [float(t) for t in thresholds],
        auc=[roc_auc(scores[:, c], labels[:, c]) for c in range(scores.shape[1])],
        precision=[_share(tp, n) for tp, n in zip(true_pos, flagged)],
        recall=[_share(tp, n) for tp, n in zip(true_pos, positives)],
        accuracy=(flags == labels).mean(axis=0).tolist(),
        positives=positives.tolist(),
        images=len(scores),
        screened_out=float(screened.mean()) if len(scores) else 0.0,
        clean_screened_out=_share(screened[clean].sum(), clean.sum()),
        defective_screened_out=_share(screened[~clean].sum(), (~clean).sum()),
    )


def format_report(report: ScreeningReport, class_names: list[str]) -> str:
    """The report as a table for people, one row per class, then the screened shares."""
    lines = [f"{'class':<12}{'positives':>10}{'AUC':>8}{'threshold':>11}{'precision':>11}{'recall':>8}{'accuracy':>10}"]
    thresholds = report.screen_threshold or [None] * len(class_names)
    for i, name in enumerate(class_names):
        threshold = "-" if thresholds[i] is None else f"{thresholds[i]:.2f}"
        lines.append(
            f"{name:<12}{report.positives[i]:>10}{_fmt(report.auc[i]):>8}{threshold:>11}"
            f"{_fmt(report.precision[i]):>11}{_fmt(report.recall[i]):>8}{report.accuracy[i]:>10.4f}"
        )
    lines.append(
        f"screened out (no class present): {_percent(report.screened_out)} of {report.images} images; "
        f"clean images: {_percent(report.clean_screened_out)}; "
        f"defective images (lost): {_percent(report.defective_screened_out)}"
    )
    return "\n".join(lines)


def _share(part, whole) -> float | None:
    return float(part) / float(whole) if whole else None


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
