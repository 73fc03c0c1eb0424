"""The sections of the report pages: each adds headings, tables and figures to a ``Page``.

Figures are drawn on demand (``figures`` is imported inside each function that draws), so the
command modules that import this one stay free of matplotlib until a page is made.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from steelseg.core.metrics import Scores
from steelseg.files.overlay import save_png, truth_vs_prediction
from steelseg.reports.html import Page
from steelseg.reports.stats import class_labels, defect_areas, presence_confusion, worst_images
from steelseg.reports.sweeps import DiceSweeps


def dice(
    page: Page, figures_dir: Path, scores: Scores, truth_area: np.ndarray, pred_area: np.ndarray, class_names: list[str]
) -> None:
    from steelseg.reports import figures

    labels = class_labels(class_names)
    page.heading("Competition Dice")
    page.paragraph(
        f"Mean Dice over every (image, class) pair of the {scores.num_images} images (an empty prediction of a "
        "clean image scores 1), as steelseg score prints it; dataset Dice and IoU pool the pixels of all images."
    )
    truth_images, pred_images = np.count_nonzero(truth_area, axis=0), np.count_nonzero(pred_area, axis=0)
    rows = [
        [
            labels[c],
            float(scores.class_dice[c]),
            float(scores.dataset_dice[c]),
            float(scores.dataset_iou[c]),
            int(truth_images[c]),
            int(pred_images[c]),
        ]
        for c in range(len(labels))
    ]
    rows.append(["mean", scores.mean_dice, float(np.mean(scores.dataset_dice)), scores.mean_iou, "", ""])
    page.table(
        ["class", "Dice", "dataset Dice", "dataset IoU", "images with it (truth)", "(prediction)"], rows, total_row=True
    )
    path = figures_dir / "dice.png"
    figures.dice_bars(labels, scores.class_dice, scores.mean_dice, path)
    page.figure(path, "Competition Dice per class and their mean")


def presence(page: Page, truth_area: np.ndarray, pred_area: np.ndarray, class_names: list[str]) -> None:
    confusion = presence_confusion(truth_area, pred_area)
    page.heading("Is the class in the image?")
    page.paragraph(
        "Per class, images where it is present (a mask of at least one pixel) in truth and prediction (TP), only in "
        "the prediction (FP: Dice 0 on a clean image), only in the truth (FN: Dice 0), in neither (TN: Dice 1)."
    )
    rows = [
        [
            label,
            int(confusion.tp[c]),
            int(confusion.fp[c]),
            int(confusion.fn[c]),
            int(confusion.tn[c]),
            float(confusion.accuracy[c]),
        ]
        for c, label in enumerate(class_labels(class_names))
    ]
    page.table(["class", "TP", "FP", "FN", "TN", "accuracy"], rows)


def sweeps(
    page: Page,
    figures_dir: Path,
    mask_curve: DiceSweeps,
    model_curves: DiceSweeps | None,
    predictor,
    class_names: list[str],
) -> None:
    from steelseg.reports import figures

    labels = class_labels(class_names)
    page.heading("Dice against the post-processing")
    path = figures_dir / "min-area-submission.png"
    figures.sweep_curves(
        mask_curve.min_areas,
        mask_curve.by_min_area,
        labels,
        mask_curve.min_area_in_use,
        "minimum area A (pixels)",
        "Submission: Dice if predicted masks under A pixels were removed",
        path,
    )
    page.figure(
        path,
        "From the submission's masks: a class's mask is emptied when it has fewer than A pixels "
        "(ring: A = 0, the submission as it is).",
    )
    if model_curves is None:
        page.paragraph(
            "Dice against the pixel threshold is left out: a submission holds masks, not probabilities. Pass "
            "--model with the run or ensemble that made it to draw it from the model's probabilities.",
            note=True,
        )
        return
    _model_sweeps(page, figures_dir, model_curves, predictor, labels)


def _model_sweeps(page: Page, figures_dir: Path, model_curves: DiceSweeps, predictor, labels: list[str]) -> None:
    from steelseg.reports import figures

    page.paragraph(
        "From the model's probabilities on these images, not from the submission: the curves vary "
        "one value of the post-processing in use, and rings mark the value in use of each class."
    )
    for name, x, y, in_use, xlabel in (
        (
            "threshold",
            model_curves.thresholds,
            model_curves.by_threshold,
            model_curves.threshold_in_use,
            "pixel threshold",
        ),
        (
            "min-area",
            model_curves.min_areas,
            model_curves.by_min_area,
            model_curves.min_area_in_use,
            "minimum area (pixels)",
        ),
    ):
        other = "minimum area" if name == "threshold" else "pixel threshold"
        path = figures_dir / f"{name}-model.png"
        figures.sweep_curves(
            x, y, labels, in_use, xlabel, f"Model: Dice against the {xlabel}, at each class's {other} in use", path
        )
        page.figure(path, f"Dice against the {xlabel}, each class at its {other} in use")
    page.paragraph(_post_note(predictor, model_curves, labels), note=True)


def _post_note(predictor, curves: DiceSweeps, labels: list[str]) -> str:
    post = predictor.postprocess
    in_use = "; ".join(
        f"{label}: threshold {t:g}, " + ("class off" if np.isnan(a) else f"min area {int(a)}")
        for label, t, a in zip(labels, curves.threshold_in_use, curves.min_area_in_use)
    )
    note = f"In use: {in_use}."
    if (post.min_component > 1).any() or post.fill_holes.any() or post.uses_heads or (post.peak_threshold > 0).any():
        note += (
            " The post-processing in use also has components, holes or gates, which these curves leave out "
            "(they vary the pixel threshold and minimum area only)."
        )
    return note


def areas(
    page: Page, figures_dir: Path, series: dict[str, np.ndarray], class_names: list[str], title: str = "Defect areas"
) -> None:
    """Histograms of ``series`` (name -> (N, C) mask areas), one panel per class, and a table
    of how many masks each has and their median area."""
    from steelseg.reports import figures

    labels = class_labels(class_names)
    per_class = {name: defect_areas(table) for name, table in series.items()}
    page.heading(title)
    path = figures_dir / "areas.png"
    figures.area_histograms(labels, per_class, path, "Defect area per image and class (pixels of the class's mask)")
    page.figure(path, "Histograms of mask areas; only images holding the class count")
    prefixes = [f"{name}: " if len(series) > 1 else "" for name in series]
    header = ["class"] + [f"{prefix}{what}" for prefix in prefixes for what in ("masks", "median area (pixels)")]
    rows = []
    for c, label in enumerate(labels):
        row = [label]
        for values in per_class.values():
            row += [len(values[c]), int(np.median(values[c])) if len(values[c]) else "-"]
        rows.append(row)
    page.table(header, rows)


def worst(
    page: Page,
    figures_dir: Path,
    image_dice: np.ndarray,
    image_ids: list[str],
    n: int,
    load: Callable[[str], tuple],
    class_names: list[str],
) -> None:
    """Overlays (image, truth, prediction) of the ``n`` images with the lowest mean Dice;
    ``load(image_id)`` gives (image, true masks, predicted masks)."""
    if n == 0:
        return
    for stale in figures_dir.glob("worst-*.png"):  # an earlier report's, possibly of other images
        stale.unlink()
    picked = worst_images(image_dice, image_ids, n)
    below = int(np.count_nonzero(image_dice.mean(axis=1) < 1))
    page.heading(f"The {len(picked)} images with the lowest mean Dice")
    page.paragraph(
        f"{below} of {len(image_ids)} images score below 1. Top: the image; middle: the truth; bottom: "
        "the prediction; each class in its colour, as in the charts."
    )
    labels = class_labels(class_names)
    for rank, i in enumerate(picked, start=1):
        image, truth, pred = load(image_ids[i])
        mean = float(image_dice[i].mean())
        path = figures_dir / f"worst-{rank:02d}.png"
        save_png(path, truth_vs_prediction(image, truth, pred, f"{image_ids[i]}  mean Dice {mean:.4f}", class_names))
        per_class = ", ".join(f"{label} {d:.4f}" for label, d in zip(labels, image_dice[i]))
        page.figure(path, f"{rank}. {image_ids[i]}: mean Dice {mean:.4f} (per class: {per_class})")
