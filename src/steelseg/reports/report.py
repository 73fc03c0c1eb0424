"""``steelseg report PRED TRUTH IMAGES --out DIR``: one HTML page on a submission against the truth.

The page (``DIR/index.html``, figures in ``DIR/figures/``) shows the competition Dice per class
and its mean (``evaluate``/``metrics``: the same numbers ``steelseg score`` prints), which
classes each image is predicted to hold against the truth, Dice against the minimum area and
the pixel threshold (``sweeps.py``), defect areas in truth and prediction, and the images with
the lowest mean Dice as overlays. Inputs are checked as ``score`` checks them: the image set is
the IMAGES folder, the truth may name no image outside it, the prediction must name them all
(or ``--allow-missing``).

A submission holds masks, not probabilities, so the pixel-threshold curve needs ``--model``
(the run or ensemble to compute probabilities with); without it the page says so, and the
minimum-area curve is drawn from the submission's masks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from steelseg.core.metrics import DiceAccumulator, Scores
from steelseg.files.annotations import Annotations, read_annotations
from steelseg.files.datasets import CLASSES_FILE, _names_from_file
from steelseg.files.images import read_gray, read_shape
from steelseg.files.scoring import SEVERSTAL_NUM_CLASSES, ImageSet, check_prediction, read_image_set, resolve_image_set
from steelseg.reports import ReportError, out_folder
from steelseg.reports.html import Page

if TYPE_CHECKING:
    from steelseg.reports.sweeps import DiceSweeps

# The CLI imports this module to build its parser: OpenCV (tune, overlay) and matplotlib are
# imported inside the functions that need them.

PAGE = "index.html"
FIGURES_DIR = "figures"
DEFAULT_WORST = 8


@dataclass
class ReportInputs:
    """A prediction and a truth table checked against the image set of an image folder."""

    pred: Annotations
    truth: Annotations
    image_dir: Path
    image_set: ImageSet
    warnings: list[str]

    @classmethod
    def read(
        cls, pred: str | os.PathLike, truth: str | os.PathLike, images: str | os.PathLike, allow_missing: bool = False
    ) -> ReportInputs:
        """Read both tables and check them as ``steelseg score --images IMAGES`` does."""
        truth_table, pred_table = read_annotations(truth), read_annotations(pred)
        image_set = resolve_image_set(truth_table, pred_table, read_image_set(images_dir=images))
        warnings = check_prediction(pred_table, image_set, allow_missing)
        return cls(pred_table, truth_table, Path(images), image_set, warnings)

    @property
    def image_paths(self) -> list[Path]:
        return [self.image_dir / image_id for image_id in self.image_set.image_ids]


@dataclass
class Collected:
    """One pass over the image set: per image (N, C) Dice, true and predicted areas (pixels),
    the competition scores, and the minimum-area curve of the predicted masks."""

    image_ids: list[str]
    scores: Scores
    image_dice: np.ndarray
    truth_area: np.ndarray
    pred_area: np.ndarray
    min_area_curve: DiceSweeps


def collect(inputs: ReportInputs, num_classes: int, min_areas: list[int] | None = None) -> Collected:
    """Decode every image's masks at its own size (read from the file header) and score them;
    ``min_areas``: the grid of the minimum-area curve (default training's)."""
    from steelseg.reports.sweeps import MIN_AREA_GRID, mask_min_area_curve, mask_search

    min_areas = MIN_AREA_GRID if min_areas is None else min_areas
    ids = inputs.image_set.image_ids
    accumulator, search = DiceAccumulator(num_classes), mask_search(num_classes, min_areas)
    image_dice = np.zeros((len(ids), num_classes))
    truth_area, pred_area = np.zeros((2, len(ids), num_classes), dtype=np.int64)
    for i, path in enumerate(inputs.image_paths):
        shape = read_shape(path)
        truth = inputs.truth.masks(path.name, num_classes, shape)
        pred = inputs.pred.masks(path.name, num_classes, shape)
        image_dice[i] = accumulator.update(pred, truth)
        truth_area[i] = np.count_nonzero(truth.reshape(num_classes, -1), axis=1)
        pred_area[i] = np.count_nonzero(pred.reshape(num_classes, -1), axis=1)
        search.update(pred, truth)
    return Collected(ids, accumulator.result(), image_dice, truth_area, pred_area, mask_min_area_curve(search))


def report_class_names(images: str | os.PathLike, predictor=None, num_classes: int | None = None) -> list[str]:
    """The classes, first found of: the model's; ``classes.json`` beside the IMAGES folder (a
    data set folder's, as ``steelseg synth`` writes it); ``num_classes`` ids (default 4)."""
    names = list(predictor.class_names) if predictor is not None else None
    if names is None:
        names = _names_from_file(Path(images).parent) if (Path(images).parent / CLASSES_FILE).is_file() else None
    if names is None:
        return [str(c) for c in range(1, (num_classes or SEVERSTAL_NUM_CLASSES) + 1)]
    if num_classes is not None and num_classes != len(names):
        where = "the model" if predictor is not None else Path(images).parent / CLASSES_FILE
        raise ReportError(f"--num-classes {num_classes}, but {where} has {len(names)} classes: {', '.join(names)}")
    return names


def write_report(
    inputs: ReportInputs,
    out: str | os.PathLike,
    class_names: list[str],
    worst: int = DEFAULT_WORST,
    predictor=None,
    progress: bool = True,
) -> Path:
    """Write ``OUT/index.html`` and its figures; returns the page's path. ``predictor`` (a
    ``Predictor``, optional) gives the probabilities of the pixel-threshold curve."""
    from steelseg.reports import sections

    num_classes = len(class_names)
    inputs.truth.check_classes(num_classes)
    inputs.pred.check_classes(num_classes)
    collected = collect(inputs, num_classes)  # a mask past its image's end fails here, before any file is made
    out = out_folder(out, FIGURES_DIR)
    figures_dir = out / FIGURES_DIR
    curves = model_curves(inputs, predictor, num_classes, progress) if predictor is not None else None
    page = Page("steelseg report", out)
    page.items(_describe_inputs(inputs, predictor))
    sections.dice(page, figures_dir, collected.scores, collected.truth_area, collected.pred_area, class_names)
    sections.presence(page, collected.truth_area, collected.pred_area, class_names)
    sections.sweeps(page, figures_dir, collected.min_area_curve, curves, predictor, class_names)
    sections.areas(page, figures_dir, {"truth": collected.truth_area, "prediction": collected.pred_area}, class_names)
    overlays = _overlay_source(inputs, num_classes)
    sections.worst(page, figures_dir, collected.image_dice, collected.image_ids, worst, overlays, class_names)
    return page.write(PAGE)


def model_curves(inputs: ReportInputs, predictor, num_classes: int, progress: bool = True) -> DiceSweeps:
    """Dice against the pixel threshold and the minimum area from ``predictor``'s probabilities
    on the image set, through its post-processing in use (grids: ``tuning`` and the run's config)."""
    from steelseg.reports.sweeps import MIN_AREA_GRID, THRESHOLD_GRID, probability_curves

    if not getattr(predictor, "has_masks", True):
        raise ReportError(
            f"--model: a {predictor.task} run gives class scores only; the curves need pixel probabilities"
        )
    post, grid = predictor.postprocess, predictor.config.postprocess

    def pairs():
        for path, image, outputs in predictor.iter_folder(inputs.image_dir, progress, paths=inputs.image_paths):
            yield outputs.pixels, inputs.truth.masks(path.name, num_classes, image.shape)

    thresholds = sorted(set(THRESHOLD_GRID) | set(grid.threshold_grid))
    min_areas = sorted(set(MIN_AREA_GRID) | set(grid.min_area_grid))
    return probability_curves(pairs(), num_classes, post.pixel_threshold, post.min_area, thresholds, min_areas)


def _overlay_source(inputs: ReportInputs, num_classes: int):
    """image id -> (image, true masks, predicted masks): read again for the few images shown."""

    def load(image_id: str):
        image = read_gray(inputs.image_dir / image_id)
        masks = [table.masks(image_id, num_classes, image.shape) for table in (inputs.truth, inputs.pred)]
        return image, masks[0], masks[1]

    return load


def _describe_inputs(inputs: ReportInputs, predictor) -> list[str]:
    lines = [
        f"prediction: {inputs.pred.source}",
        f"truth: {inputs.truth.source}",
        f"images: {inputs.image_dir} ({len(inputs.image_set.image_ids)} images, the scored set)",
    ]
    if predictor is not None:
        runs = ", ".join(member.name for member in predictor.members)
        lines.append(f"model, for the post-processing curves only: {runs} ({predictor.describe()})")
    return lines + [f"warning: {w}" for w in inputs.warnings]
