"""Search each class's post-processing for the best Dice. Pure numpy + OpenCV.

``PostprocessSearch`` (training's validation: pixel threshold and minimum area) and
``GatedSearch`` (``steelseg tune``, ``inference.tune``, on out-of-fold files: also component
size and the gates on the class heads and on the peaks). Streaming: ``update`` takes one
image's probabilities and true masks and keeps only pixel counts per (threshold, image,
class), so a whole validation set never sits in memory. Classes are independent under both
metrics, so each is tuned on its own.

No search switches a class off unless asked (``allow_off``): a setting that can never predict
a pixel of the class (``switched_off``) is not a candidate, however well "never" scores. A
plant must not lose a defect class to win a metric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

from steelseg.core.metrics import dice_from_counts
from steelseg.core.postprocess import NEVER, PostProcess, fill_holes, thresholds_for
from steelseg.core.postprocess import peaks as pixel_peaks

# competition: the mean over images of each image's Dice (an empty prediction of an empty truth
# scores 1); dataset: 2 sum|P n T| / (sum|P| + sum|T|) over all images, 1 when both sums are 0.
METRICS = ("competition", "dataset")


def check_metric(metric: str, recall_floor: float | None = None) -> None:
    """A ValueError naming a metric not in ``METRICS`` or a recall floor not in [0, 1]."""
    if metric not in METRICS:
        raise ValueError(f"metric {metric!r} is not one of {', '.join(METRICS)}")
    if recall_floor is not None and not 0 <= recall_floor <= 1:  # NaN fails too
        raise ValueError(f"recall floor {recall_floor!r} is not a share in [0, 1]")


def needed_hits(recall_floor: float | None, positives: int) -> int:
    """The detections a recall floor asks of a class with ``positives`` true (image, class) pairs.

    Defect recall (image-level detection recall) of a class on the tuning images is
    ``hits / positives``: ``positives`` the images with at least one true pixel of the class,
    ``hits`` those of them whose post-processed prediction has at least one pixel of the class
    (anywhere in the image). A setting meets the floor R when ``hits >= ceil(R * positives)``,
    computed exactly with R read as the decimal it is written as: 0.9 of 10 positives needs 9
    hits, 0.7 of 10 needs 7 (not 8, as 0.7 * 10 = 7.000000000000001 in floats would). A class
    without positives meets every floor (0 needed)."""
    if recall_floor is None or positives == 0:
        return 0
    return math.ceil(Fraction(repr(float(recall_floor))) * positives)


def switched_off(post: PostProcess, pixels: float | None = None) -> np.ndarray:
    """(C,) bool: the classes ``post`` can never predict a pixel of: a minimum area or component
    size of ``NEVER`` (or above ``pixels``, the largest image's size, when given), a pixel
    threshold above 1, or a gate (class head, peak) at 1 or above (no probability is above 1)."""
    sizes = np.maximum(post.min_area, post.min_component)
    too_big = sizes >= NEVER if pixels is None else (sizes >= NEVER) | (sizes > pixels)
    return too_big | (post.pixel_threshold > 1) | (post.head_threshold >= 1) | (post.peak_threshold >= 1)


class PostprocessSearch:
    def __init__(self, num_classes: int, thresholds: list[float], min_areas: list[int], allow_off: bool = False):
        # Ties go to the most cautious setting (highest threshold, then largest min area):
        # on data without defects every setting that predicts nothing scores 1, and the
        # cautious one is the one that keeps predicting nothing on new clean images. ``scores``
        # has a column for switching a class off (NEVER, last) whatever ``allow_off`` says (the
        # Dice of predicting nothing, which the reports draw); ``best`` picks an "off" setting
        # (``switched_off``: NEVER, a min area over the images' size, a threshold above 1) only
        # with ``allow_off``, and then only when strictly better.
        self.thresholds = np.sort(np.asarray(thresholds, dtype=float))[::-1]
        finite = np.sort(np.asarray(min_areas, dtype=np.int64))[::-1]
        self.min_areas = np.append(finite[finite < NEVER], NEVER)
        self.num_classes = num_classes
        self.allow_off = allow_off
        self.pixels = 0  # the largest image's pixels
        self._areas: list[np.ndarray] = []  # per image: (T, C) predicted pixels
        self._inters: list[np.ndarray] = []  # per image: (T, C) true positive pixels
        self._truths: list[np.ndarray] = []  # per image: (C,) true pixels

    def update(self, probs: np.ndarray, truth: np.ndarray) -> None:
        """Add one image: probabilities (C, H, W) float and true masks (C, H, W) bool."""
        probs = probs.reshape(self.num_classes, -1)
        truth = truth.reshape(self.num_classes, -1).astype(bool, copy=False)
        predicted = probs[None] >= thresholds_for(probs.dtype, self.thresholds)[:, None, None]  # (T, C, P)
        self._areas.append(np.count_nonzero(predicted, axis=2))
        self._inters.append(np.count_nonzero(predicted & truth[None], axis=2))
        self._truths.append(np.count_nonzero(truth, axis=1))
        self.pixels = max(self.pixels, probs.shape[1])

    def scores(self) -> np.ndarray:
        """Mean Dice over images for every setting: (T thresholds, A min areas, C classes)."""
        if not self._areas:
            raise ValueError("no images were added to the search")
        areas = np.stack(self._areas, axis=1)[:, None]  # (T, 1, N, C)
        inters = np.stack(self._inters, axis=1)[:, None]
        truths = np.stack(self._truths)[None, None]  # (1, 1, N, C)
        kept = areas >= self.min_areas[None, :, None, None]  # (T, A, N, C)
        dice = dice_from_counts(np.where(kept, inters, 0), np.where(kept, areas, 0), truths)
        return dice.mean(axis=2)

    def allowed(self) -> np.ndarray:
        """(T, A) bool: the settings ``best`` may pick (every one with ``allow_off``)."""
        if self.allow_off:
            return np.ones((len(self.thresholds), len(self.min_areas)), bool)
        sizes = (self.min_areas < NEVER) & (self.min_areas <= self.pixels)
        return (self.thresholds <= 1)[:, None] & sizes[None, :]

    def best(self) -> tuple[PostProcess, np.ndarray]:
        """The best setting of every class, and each class's mean Dice with it: (C,)."""
        scores = self.scores()
        allowed = self.allowed()
        if not allowed.any():
            raise ValueError(
                f"every setting of the grid switches the classes off (min area over the images' {self.pixels} "
                "pixels, or a threshold above 1)"
            )
        flat = scores.reshape(-1, self.num_classes)
        pick = np.where(allowed.reshape(-1, 1), flat, -np.inf).argmax(axis=0)  # the first maximum: most cautious
        t_index, a_index = np.unravel_index(pick, scores.shape[:2])
        best = PostProcess(self.thresholds[t_index], self.min_areas[a_index])
        return best, flat[pick, np.arange(self.num_classes)]


# A gate threshold of 0 lets every image through (the gate is off); it is tried last, so a
# gate is chosen only when it scores strictly better than none.
OFF = 0.0


@dataclass(frozen=True)
class SearchChoice:
    """What ``GatedSearch.choose`` picked, and per class (C,): its score with the search's
    metric, its defect recall on the tuning images as counts (``needed_hits`` defines it), and
    whether it meets the recall floor (False: nothing on the grid did; the highest recall won)."""

    postprocess: PostProcess
    scores: np.ndarray  # (C,) float
    hits: np.ndarray  # (C,) int: true (image, class) pairs with a predicted pixel of the class
    positives: np.ndarray  # (C,) int: true (image, class) pairs
    floor_met: np.ndarray  # (C,) bool
    pixels: float  # the largest tuning image, in full-size pixels

    @property
    def recall(self) -> np.ndarray:
        """(C,) hits / positives; NaN for a class without positives."""
        return np.where(self.positives > 0, self.hits / np.maximum(self.positives, 1), np.nan)


class _Pick:
    """The best of the blocks of settings offered to it, under a recall floor (``needed`` hits;
    0: none): the best score among the settings that meet the floor; when none does, the highest
    recall, then the best score. Ties go to the first offered, first in its block (the most
    cautious, by the grids' order)."""

    def __init__(self, needed: int):
        self.needed = needed
        self.met = None  # (score, index in the block, key)
        self.fallback = None  # (hits, score, index in the block, key)

    def offer(self, scores: np.ndarray, hits: np.ndarray | None, key) -> None:
        """``scores`` and ``hits`` of a block of settings (same shape; ``hits`` None when no floor)."""
        eligible = np.ones(scores.shape, bool) if hits is None else hits >= self.needed
        if eligible.any():
            masked = np.where(eligible, scores, -np.inf)
            i = int(masked.argmax())
            if self.met is None or masked.flat[i] > self.met[0] + 1e-12:
                self.met = (float(masked.flat[i]), np.unravel_index(i, scores.shape), key)
        elif self.met is None:
            top = int(hits.max())
            masked = np.where(hits == top, scores, -np.inf)
            i = int(masked.argmax())
            old = self.fallback
            if old is None or top > old[0] or (top == old[0] and masked.flat[i] > old[1] + 1e-12):
                self.fallback = (top, float(masked.flat[i]), np.unravel_index(i, scores.shape), key)

    def result(self):
        """((score, index in its block, key), whether it meets the floor)."""
        return (self.met, True) if self.met is not None else (self.fallback[1:], False)


class GatedSearch:
    """The gated post-processing (``PostProcess``) with the best Dice per class (``metric``, one
    of ``METRICS``), over a grid of pixel thresholds x component sizes x minimum areas x head
    thresholds (on the class heads) x peak thresholds. Streaming like ``PostprocessSearch``:
    ``update`` keeps, per image, pixel counts per (threshold, component size, class) and the
    gate scores.

    Sizes are in pixels of the full image; an image stored at a reduced scale (out-of-fold
    files) passes ``factor`` = full-size pixels per stored pixel, and its counts are scaled (the
    dataset metric sums full-size pixels). Ties go to the most cautious setting (higher
    thresholds, larger sizes, a gate over none). ``recall_floor``: only settings whose defect
    recall meets it are eligible (``needed_hits``), else the highest recall. Without
    ``allow_off`` no setting that switches a class off is tried (``switched_off``: min area
    NEVER, a pixel threshold above 1, a gate at 1 or above, a size over the largest image); with
    it, NEVER joins the area grid, tried last.
    """

    def __init__(
        self,
        num_classes: int,
        pixel_grid,
        component_grid,
        area_grid,
        head_grid,
        peak_grid,
        has_heads=None,
        fill_holes=None,
        soft_gate: bool = False,
        peak: str = "max",
        peak_top_k: int = 100,
        fixed_min_area=None,
        metric: str = "competition",
        recall_floor: float | None = None,
        allow_off: bool = False,
    ):
        check_metric(metric, recall_floor)
        self.num_classes, self.metric, self.recall_floor, self.allow_off = num_classes, metric, recall_floor, allow_off
        on = (lambda values: values) if allow_off else (lambda values: values[values < 1])  # noqa: E731
        self.thresholds = np.sort(np.asarray(pixel_grid, dtype=float))[::-1]
        self.components = np.sort(np.asarray(component_grid, dtype=np.int64))[::-1]
        finite = np.sort(np.asarray(area_grid, dtype=np.int64))[::-1]
        self.areas = np.append(finite[finite < NEVER], NEVER) if allow_off else finite[finite < NEVER]
        if not allow_off:
            self.thresholds = self.thresholds[self.thresholds <= 1]
            self.components = self.components[self.components < NEVER]
        gates = lambda grid: np.append(on(np.sort(np.asarray([g for g in grid if g > OFF], dtype=float))[::-1]), OFF)  # noqa: E731
        self.head_grid, self.peak_grid = gates(head_grid), gates(peak_grid)
        for name, grid in (("pixel", self.thresholds), ("component", self.components), ("area", self.areas)):
            if fixed_min_area is None or name != "area":
                _check_some(name, grid)
        self.has_heads = np.zeros(num_classes, bool) if has_heads is None else np.asarray(has_heads, bool)
        self.fill = np.zeros(num_classes, bool) if fill_holes is None else np.asarray(fill_holes, bool)
        self.fixed_min_area = None if fixed_min_area is None else np.asarray(fixed_min_area, dtype=np.int64)
        self.soft_gate, self.peak, self.peak_top_k = soft_gate, peak, peak_top_k
        self.pixels = 0.0  # the largest image, full-size pixels
        self._areas, self._inters, self._truths, self._factors, self._peaks, self._heads = [], [], [], [], [], []

    def update(
        self, probs: np.ndarray, truth: np.ndarray, heads: np.ndarray | None = None, factor: float = 1.0
    ) -> None:
        """One image: probabilities (C, h, w), true masks (C, h, w) bool, class-head
        probabilities (C,) (NaN where no head predicts the class) or None."""
        if self.soft_gate:
            probs = probs * np.nan_to_num(heads, nan=1.0).astype(probs.dtype)[:, None, None]
        truth = truth.astype(bool, copy=False)
        shape = (len(self.thresholds), len(self.components), self.num_classes)
        areas, inters = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        limits = np.ceil(self.components / factor - 1e-9).astype(np.int64)  # component sizes in stored pixels
        for t, threshold in enumerate(thresholds_for(probs.dtype, self.thresholds)):
            for c in range(self.num_classes):
                mask = probs[c] >= threshold
                if mask.any():
                    areas[t, :, c], inters[t, :, c] = self._component_counts(mask, truth[c], limits, self.fill[c])
        self._areas.append(areas)
        self._inters.append(inters)
        self._truths.append(np.count_nonzero(truth.reshape(self.num_classes, -1), axis=1))
        self._factors.append(factor)
        self._peaks.append(self.peaks(probs, factor))
        self._heads.append(np.full(self.num_classes, np.nan) if heads is None else np.asarray(heads, dtype=float))
        self.pixels = max(self.pixels, probs.shape[1] * probs.shape[2] * factor)

    def peaks(self, probs: np.ndarray, factor: float = 1.0) -> np.ndarray:
        """(C,) each class's peak; a top-K mean over K full-size pixels, i.e. K / factor stored ones."""
        return pixel_peaks(probs, self.peak, max(1, round(self.peak_top_k / factor)))

    @staticmethod
    def _component_counts(mask, truth, limits, fill: bool) -> tuple[np.ndarray, np.ndarray]:
        """(S,) predicted and true-positive pixels after removing components under each limit."""
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.view(np.uint8), connectivity=8)
        sizes = stats[1:, cv2.CC_STAT_AREA]
        if fill:
            out = [
                (m.sum(), (m & truth).sum())
                for m in (fill_holes(np.append(False, sizes >= limit)[labels]) for limit in limits)
            ]
            return np.array([a for a, _ in out]), np.array([i for _, i in out])
        hits = np.bincount(labels[truth], minlength=count)[1:]
        kept = sizes[None, :] >= limits[:, None]  # (S, components)
        return (kept * sizes).sum(axis=1), (kept * hits).sum(axis=1)

    def best(self) -> tuple[PostProcess, np.ndarray]:
        """The best setting of every class, and each class's score (``metric``) with it: (C,)."""
        choice = self.choose()
        return choice.postprocess, choice.scores

    def choose(self) -> SearchChoice:
        """The best setting of every class, with its score and defect recall (``SearchChoice``)."""
        if not self._areas:
            raise ValueError("no images were added to the search")
        # Without allow_off, sizes over the largest image would never leave a pixel: not candidates
        components, areas_grid = self.components, self.areas
        s_ok = np.ones(len(components), bool) if self.allow_off else components <= self.pixels
        if not self.allow_off:
            _check_some("component", components[s_ok], f" at most the largest image's {self.pixels:g} pixels")
            areas_grid = areas_grid[areas_grid <= self.pixels]
            if self.fixed_min_area is None:
                _check_some("area", areas_grid, f" at most the largest image's {self.pixels:g} pixels")
        counts = {
            "areas": np.stack(self._areas, axis=-1)[:, s_ok],  # (T, S, C, N)
            "inters": np.stack(self._inters, axis=-1)[:, s_ok],
            "truths": np.stack(self._truths, axis=-1),  # (C, N)
            "peaks": np.stack(self._peaks, axis=-1),
            "heads": np.stack(self._heads, axis=-1),
        }
        factors, sizes = np.asarray(self._factors), components[s_ok]
        keys = ("pixel_threshold", "min_component", "min_area", "head_threshold", "peak_threshold")
        chosen, rows = {k: [] for k in keys}, []
        for c in range(self.num_classes):
            grid = areas_grid if self.fixed_min_area is None else self.fixed_min_area[c : c + 1]
            setting, *row = self._best_class(c, {k: v[..., c, :] for k, v in counts.items()}, factors, sizes, grid)
            for key, value in zip(keys, setting):
                chosen[key].append(value)
            rows.append(row)
        post = PostProcess.uniform(
            self.num_classes,
            chosen.pop("pixel_threshold"),
            chosen.pop("min_area"),
            **chosen,
            fill_holes=self.fill,
            peak=self.peak,
            peak_top_k=self.peak_top_k,
            soft_gate=self.soft_gate,
        )
        scores, hits, positives, met = (np.array(column) for column in zip(*rows))
        return SearchChoice(post, scores.astype(float), hits, positives, met.astype(bool), self.pixels)

    def _best_class(self, c: int, counts: dict, factors: np.ndarray, components: np.ndarray, area_grid: np.ndarray):
        """Class ``c``'s best (threshold, component size, min area, head gate, peak gate), its
        score, hits, positives and whether it meets the floor; ``counts`` as in ``choose``."""
        areas, inters, truths, peaks, heads = (counts[k] for k in ("areas", "inters", "truths", "peaks", "heads"))
        full = areas * factors  # (T, S, N) in full-size pixels, for the minimum area and the dataset Dice
        dice = dice_from_counts(inters, areas, truths)  # (T, S, N): scale-free
        empty = (truths == 0).astype(float)  # the Dice of predicting nothing
        big = full[:, :, None, :] >= area_grid[None, None, :, None]  # (T, S, A, N)
        shown = (areas > 0)[:, :, None, :] & (truths > 0)  # (T, S, 1, N): a true defect with a predicted pixel
        positives = int(np.count_nonzero(truths))
        pick = _Pick(needed_hits(self.recall_floor, positives))
        for head in self.head_grid if self.has_heads[c] else np.array([OFF]):
            passed = (head <= OFF) | (heads > head)
            for peak in self.peak_grid:
                kept = big & (passed & ((peak <= OFF) | (peaks > peak)))  # (T, S, A, N)
                if self.metric == "competition":
                    scores = np.where(kept, dice[:, :, None, :], empty).mean(axis=-1)  # (T, S, A)
                else:
                    inter = np.where(kept, (inters * factors)[:, :, None, :], 0).sum(axis=-1)
                    pred = np.where(kept, full[:, :, None, :], 0).sum(axis=-1)
                    scores = dice_from_counts(inter, pred, float((truths * factors).sum()))
                pick.offer(scores, (kept & shown).sum(axis=-1) if pick.needed else None, (head, peak))
        (score, (t, s, a), (head, peak)), met = pick.result()
        gate = ((head <= OFF) | (heads > head)) & ((peak <= OFF) | (peaks > peak))
        hits = int(np.count_nonzero(big[t, s, a] & gate & shown[t, s, 0]))
        setting = (self.thresholds[t], int(components[s]), int(area_grid[a]), float(head), float(peak))
        return setting, score, hits, positives, met


def _check_some(name: str, grid: np.ndarray, more: str = "") -> None:
    """A ValueError when the ``name`` grid has no value left that can predict a pixel."""
    if len(grid) == 0:
        raise ValueError(
            f"the {name} grid has no value that can predict a pixel{more}: every one switches the classes off "
            "(allow_off, --allow-off, tries them)"
        )
