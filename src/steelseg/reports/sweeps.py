"""Dice against the pixel threshold and against the minimum area: slices of the grid that
training's validation searches (``core.search.PostprocessSearch``), through the values in use.

Two sources:

- probabilities (``--model``): the whole grid; Dice against the pixel threshold at each class's
  minimum area in use, and against the minimum area at its pixel threshold in use;
- a submission's masks alone (no probabilities): only the minimum-area slice, "what if the
  predicted masks under A pixels were removed"; the masks go in as probabilities of 0 and 1
  through a single threshold of 0.5, and A = 0 is the submission as it is.

Other post-processing steps (components, holes, gates) are not part of this search.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from steelseg.config import PostprocessConfig
from steelseg.core.postprocess import NEVER
from steelseg.core.search import PostprocessSearch

THRESHOLD_GRID = [round(0.05 * i, 2) for i in range(1, 20)]  # 0.05 .. 0.95
MIN_AREA_GRID = PostprocessConfig.model_fields["min_area_grid"].default  # training's grid


@dataclass(frozen=True)
class DiceSweeps:
    """Mean competition Dice over the images, per class. ``by_threshold`` is None without
    probabilities. Grids ascending; a class switched off (min area NEVER) has NaN in
    ``min_area_in_use`` and its ``by_threshold`` column is the Dice of predicting nothing."""

    min_areas: np.ndarray  # (A,) int64, finite
    by_min_area: np.ndarray  # (A, C)
    min_area_in_use: np.ndarray  # (C,) float
    thresholds: np.ndarray | None = None  # (T,)
    by_threshold: np.ndarray | None = None  # (T, C)
    threshold_in_use: np.ndarray | None = None  # (C,)


def probability_curves(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    threshold_in_use: np.ndarray,
    min_area_in_use: np.ndarray,
    thresholds: list[float] = THRESHOLD_GRID,
    min_areas: list[int] = MIN_AREA_GRID,
) -> DiceSweeps:
    """Both slices from (probabilities (C, H, W) float, true masks (C, H, W) bool) per image,
    through each class's ``threshold_in_use`` and ``min_area_in_use`` (C,) (added to the grids)."""
    threshold_in_use = np.asarray(threshold_in_use, dtype=float)
    min_area_in_use = np.asarray(min_area_in_use, dtype=np.int64)
    search = PostprocessSearch(
        num_classes,
        np.unique(np.concatenate([thresholds, threshold_in_use])).tolist(),
        np.unique(np.concatenate([min_areas, min_area_in_use])).tolist(),
    )
    _feed(search, pairs)
    scores = search.scores()  # (T, A, C), both grids descending, NEVER last
    t_at = [int(np.argmin(np.abs(search.thresholds - t))) for t in threshold_in_use]
    a_at = [int(np.flatnonzero(search.min_areas == a)[0]) for a in min_area_in_use]
    by_threshold = np.stack([scores[:, a_at[c], c] for c in range(num_classes)], axis=1)[::-1]
    by_min_area = np.stack([scores[t_at[c], :, c] for c in range(num_classes)], axis=1)
    finite = search.min_areas < NEVER
    return DiceSweeps(
        min_areas=search.min_areas[finite][::-1],
        by_min_area=by_min_area[finite][::-1],
        min_area_in_use=np.where(min_area_in_use < NEVER, min_area_in_use, np.nan),
        thresholds=search.thresholds[::-1],
        by_threshold=by_threshold,
        threshold_in_use=threshold_in_use,
    )


def mask_search(num_classes: int, min_areas: list[int] = MIN_AREA_GRID) -> PostprocessSearch:
    """The search that ``mask_min_area_curve`` reads: ``update`` it with each image's predicted
    masks (as probabilities) and true masks, (C, H, W) bool each."""
    return PostprocessSearch(num_classes, [0.5], sorted(set(min_areas) | {0}))


def mask_min_area_curve(search: PostprocessSearch) -> DiceSweeps:
    """The minimum-area slice of a ``mask_search``; the submission as it is (A = 0) is the value in use."""
    scores = search.scores()[0]  # (A, C)
    finite = search.min_areas < NEVER
    return DiceSweeps(
        min_areas=search.min_areas[finite][::-1],
        by_min_area=scores[finite][::-1],
        min_area_in_use=np.zeros(search.num_classes),
    )


def _feed(search: PostprocessSearch, pairs: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
    for probs, truth in pairs:
        search.update(probs, truth)
