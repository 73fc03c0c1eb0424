"""Search each class's post-processing for the best competition Dice. Pure numpy + OpenCV.

``PostprocessSearch`` (training's validation: pixel threshold and minimum area) and
``GatedSearch`` (``steelseg tune``, ``inference.tune``, on out-of-fold files: also component
size and the gates on the class heads and on the peaks). Streaming: ``update`` takes one
image's probabilities and true masks and keeps only pixel counts per (threshold, image,
class), so a whole validation set never sits in memory. Classes are independent under the
mean Dice, so each is tuned on its own.
"""

from __future__ import annotations

import cv2
import numpy as np

from steelseg.core.metrics import dice_from_counts
from steelseg.core.postprocess import NEVER, PostProcess, fill_holes, thresholds_for
from steelseg.core.postprocess import peaks as pixel_peaks


class PostprocessSearch:
    def __init__(self, num_classes: int, thresholds: list[float], min_areas: list[int]):
        # Ties go to the most cautious setting (highest threshold, then largest min area):
        # on data without defects every setting that predicts nothing scores 1, and the
        # cautious one is the one that keeps predicting nothing on new clean images. Switching
        # a class off (NEVER) is tried last, so it wins only when strictly better.
        self.thresholds = np.sort(np.asarray(thresholds, dtype=float))[::-1]
        finite = np.sort(np.asarray(min_areas, dtype=np.int64))[::-1]
        self.min_areas = np.append(finite[finite < NEVER], NEVER)
        self.num_classes = num_classes
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

    def best(self) -> tuple[PostProcess, np.ndarray]:
        """The best setting of every class, and each class's mean Dice with it: (C,)."""
        scores = self.scores()
        flat = scores.reshape(-1, self.num_classes)
        pick = flat.argmax(axis=0)  # first maximum = most cautious, by the sort order above
        t_index, a_index = np.unravel_index(pick, scores.shape[:2])
        best = PostProcess(self.thresholds[t_index], self.min_areas[a_index])
        return best, flat[pick, np.arange(self.num_classes)]


# A gate threshold of 0 lets every image through (the gate is off); it is tried last, so a
# gate is chosen only when it scores strictly better than none.
OFF = 0.0


class GatedSearch:
    """The gated post-processing (``PostProcess``) with the best competition Dice per class,
    over a grid of pixel thresholds x component sizes x minimum areas x head thresholds (on
    the class heads) x peak thresholds. Streaming like ``PostprocessSearch``: ``update`` keeps,
    per image, pixel counts per (threshold, component size, class) and the gate scores.

    Sizes are in pixels of the full image; an image stored at a reduced scale (out-of-fold
    files) passes ``factor`` = full-size pixels per stored pixel, and its counts are scaled.
    Ties go to the most cautious setting (higher thresholds, larger sizes, a gate over none).
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
    ):
        self.num_classes = num_classes
        self.thresholds = np.sort(np.asarray(pixel_grid, dtype=float))[::-1]
        self.components = np.sort(np.asarray(component_grid, dtype=np.int64))[::-1]
        finite = np.sort(np.asarray(area_grid, dtype=np.int64))[::-1]
        self.areas = np.append(finite[finite < NEVER], NEVER)
        gates = lambda grid: np.append(np.sort(np.asarray([g for g in grid if g > OFF], dtype=float))[::-1], OFF)  # noqa: E731
        self.head_grid, self.peak_grid = gates(head_grid), gates(peak_grid)
        self.has_heads = np.zeros(num_classes, bool) if has_heads is None else np.asarray(has_heads, bool)
        self.fill = np.zeros(num_classes, bool) if fill_holes is None else np.asarray(fill_holes, bool)
        self.fixed_min_area = None if fixed_min_area is None else np.asarray(fixed_min_area, dtype=np.int64)
        self.soft_gate, self.peak, self.peak_top_k = soft_gate, peak, peak_top_k
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
        """The best setting of every class, and each class's mean Dice with it: (C,)."""
        if not self._areas:
            raise ValueError("no images were added to the search")
        areas = np.stack(self._areas, axis=-1)  # (T, S, C, N)
        inters = np.stack(self._inters, axis=-1)
        truths = np.stack(self._truths, axis=-1)  # (C, N)
        factors = np.asarray(self._factors)
        peaks, heads = np.stack(self._peaks, axis=-1), np.stack(self._heads, axis=-1)  # (C, N)
        chosen = {k: [] for k in ("pixel_threshold", "min_component", "min_area", "head_threshold", "peak_threshold")}
        dices = []
        for c in range(self.num_classes):
            setting, dice = self._best_class(areas[:, :, c], inters[:, :, c], truths[c], factors, peaks[c], heads[c], c)
            for key, value in zip(chosen, setting):
                chosen[key].append(value)
            dices.append(dice)
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
        return post, np.array(dices)

    def _best_class(self, areas, inters, truths, factors, peaks, heads, c):
        full = areas * factors  # (T, S, N) in full-size pixels, for the minimum area
        dice = dice_from_counts(inters, areas, truths)  # (T, S, N): scale-free
        empty = (truths == 0).astype(float)  # the Dice of predicting nothing
        area_grid = self.areas if self.fixed_min_area is None else self.fixed_min_area[c : c + 1]
        big = full[:, :, None, :] >= area_grid[None, None, :, None]  # (T, S, A, N)
        head_grid = self.head_grid if self.has_heads[c] else np.array([OFF])
        best, best_setting = -1.0, None
        for head in head_grid:
            passed = (head <= OFF) | (heads > head)
            for peak in self.peak_grid:
                gate = passed & ((peak <= OFF) | (peaks > peak))
                scores = np.where(big & gate, dice[:, :, None, :], empty).mean(axis=-1)  # (T, S, A)
                flat = int(scores.argmax())  # the first maximum: the most cautious
                if scores.flat[flat] > best + 1e-12:
                    t, s, a = np.unravel_index(flat, scores.shape)
                    best = float(scores.flat[flat])
                    best_setting = (
                        self.thresholds[t],
                        int(self.components[s]),
                        int(area_grid[a]),
                        float(head),
                        float(peak),
                    )
        return best_setting, best
