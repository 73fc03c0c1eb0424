"""Whether a class is present, next to where: class scores, soft gating. Pure numpy.

Every network gives named outputs at its resolution (``TASK_OUTPUTS``): pixel probabilities
(N, C, h, w), class probabilities (N, C), or both. ``to_image`` turns them into what every
caller uses, at the image's size: pixel probabilities (a two-headed network's gated by its
class head, 4th place) and one score per class (the class head's, or for networks without
one the max or top-K mean of the pixel probabilities, 5th place). Validation, the Predictor
and out-of-fold files all call it, so a class score means the same number everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from steelseg.config import ModelConfig
from steelseg.core.postprocess import peaks
from steelseg.core.preprocess import upsample_probs

PIXELS = "probabilities"  # (N, C, h, w) per-class defect probability of each pixel
CLASSES = "class_probabilities"  # (N, C) probability that the image holds the class

TASK_OUTPUTS = {
    "segment": (PIXELS,),
    "classify": (CLASSES,),
    "two_head": (PIXELS, CLASSES),
    "instance": (PIXELS,),
}


@dataclass(frozen=True)
class Outputs:
    """A batch's predictions at the images' size: ``pixels`` (N, C, H, W) float32, or None for
    a classifier; ``scores`` (N, C) float32, the probability that each class is present;
    ``heads`` (N, C) float32, the class heads' probabilities (NaN for a class no head
    predicts), or None for a network without one."""

    pixels: np.ndarray | None
    scores: np.ndarray
    heads: np.ndarray | None = None

    def __getitem__(self, index) -> Outputs:
        def part(a):
            return None if a is None else a[index]

        return Outputs(part(self.pixels), self.scores[index], part(self.heads))

    def __len__(self) -> int:
        return len(self.scores)


def soft_gate(pixels: np.ndarray, class_probs: np.ndarray) -> np.ndarray:
    """``pixels`` (N, C, H, W) times ``class_probs`` (N, C) (4th place: mask.sigmoid() *
    cls.sigmoid()): a class the head doubts fades everywhere, so the pixel threshold and
    minimum area remove it, while a sure class keeps its mask."""
    return pixels * class_probs.astype(pixels.dtype)[:, :, None, None]


def pixel_scores(pixels: np.ndarray, model: ModelConfig) -> np.ndarray:
    """The class score of a network without a class head, as ``model.score`` says."""
    return peaks(pixels, model.score, model.score_top_k)


def to_image(outputs: dict[str, np.ndarray], shape: tuple[int, int], model: ModelConfig) -> Outputs:
    """A network's outputs (``TASK_OUTPUTS`` names, at its resolution) -> ``Outputs`` at the
    image size ``shape`` = (H, W)."""
    pixels = outputs.get(PIXELS)
    if pixels is not None:
        pixels = upsample_probs(pixels, shape)
    if CLASSES in outputs:
        scores = outputs[CLASSES].astype(np.float32, copy=False)
        if pixels is not None:
            pixels = soft_gate(pixels, scores)
        return Outputs(pixels, scores, scores)
    return Outputs(pixels, pixel_scores(pixels, model))
