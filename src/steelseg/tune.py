"""Search each class's pixel threshold and minimum area for the best competition Dice.

Pure numpy and streaming: ``update`` takes one image's probabilities and true masks and keeps
only pixel counts per (threshold, image, class), so a whole validation set never sits in
memory. Classes are independent under the mean Dice, so each is tuned on its own.
"""

from __future__ import annotations

import numpy as np

from steelseg.metrics import dice_from_counts
from steelseg.postprocess import NEVER, PostProcess, thresholds_for


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
