"""Ensemble members, flip TTA and averaging in probability space. No torch here.

A ``Member`` is one network (one run directory) with its backend, the ensemble classes its
output channels stand for (a per-class binary run covers one), a weight, its TTA views and a
temperature. ``Member.outputs`` runs one batch of decoded gray images through every view:
each view flips the images, the network runs, ``core.outputs.to_image`` brings its outputs to the
image size, and the pixel probabilities are flipped back; views are averaged, then the
temperature rescales the member's logits. ``combine`` averages members per class, each class
over the members that predict it, by weight.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from steelseg.config import Config
from steelseg.core.outputs import CLASSES, PIXELS, TASK_OUTPUTS, Outputs, to_image
from steelseg.core.preprocess import to_input
from steelseg.errors import SteelsegError

# A view flips the (N, H, W) images before the network and its (N, C, H, W) pixel
# probabilities back after: every flip is its own inverse.
VIEWS = {
    "none": lambda a: a,
    "hflip": lambda a: a[..., ::-1],
    "vflip": lambda a: a[..., ::-1, :],
    "hvflip": lambda a: a[..., ::-1, ::-1],
}
# --tta names: "both" is the 1st and 4th places' three views (none, hflip, vflip), 3x the time.
TTA = {
    "none": ("none",),
    "hflip": ("none", "hflip"),
    "vflip": ("none", "vflip"),
    "both": ("none", "hflip", "vflip"),
}


class EnsembleError(SteelsegError, ValueError):
    """Members that cannot be combined, or settings they cannot use."""


def tta_views(tta: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """A TTA name (``TTA``) or a list of view names (``VIEWS``) -> the views, checked."""
    if isinstance(tta, str):
        if tta not in TTA:
            raise EnsembleError(
                f"unknown TTA {tta!r}; choose one of {', '.join(TTA)} or a list of views ({', '.join(VIEWS)})"
            )
        return TTA[tta]
    views = tuple(tta)
    bad = [v for v in views if v not in VIEWS]
    if bad or not views or len(set(views)) != len(views):
        raise EnsembleError(
            f"TTA views {list(views)!r}: each must be one of {', '.join(VIEWS)}, at least one, no repeats"
        )
    return views


@dataclass
class Member:
    name: str  # the run directory, for messages
    config: Config
    backend: object  # inference.backends.Backend
    channels: list[int]  # the ensemble class (0-based) of each output channel
    weight: float = 1.0
    views: tuple[str, ...] = ("none",)
    temperature: float = 1.0
    limits: object | None = None  # sizes.SizeLimits, or None to predict any size
    backend_note: str = ""  # why --backend auto chose this backend (inference.backend_choice)
    outputs_names: tuple[str, ...] = field(init=False)

    def __post_init__(self):
        self.outputs_names = TASK_OUTPUTS[self.config.model.task]
        if not self.weight > 0:
            raise EnsembleError(f"{self.name}: weight must be above 0, got {self.weight}")
        if not self.temperature > 0:
            raise EnsembleError(f"{self.name}: temperature must be above 0, got {self.temperature}")

    @property
    def has_pixels(self) -> bool:
        return PIXELS in self.outputs_names

    @property
    def has_heads(self) -> bool:
        return CLASSES in self.outputs_names

    def inputs(self, images: np.ndarray) -> list[np.ndarray]:
        """The network inputs of every view of (N, H, W) uint8 images: what the backend runs."""
        model = self.config.model
        return [
            to_input(
                np.ascontiguousarray(VIEWS[view](images)),
                model.input_mean,
                model.input_std,
                model.in_channels,
                model.input_scale,
            )
            for view in self.views
        ]

    def outputs(self, images: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(N, H, W) uint8 -> (pixel probabilities (N, c, H, W) or None, class-head
        probabilities (N, c) or None), over this member's c output channels."""
        pixels, heads = None, None
        for view, x in zip(self.views, self.inputs(images)):
            out = to_image(self.backend(x), images.shape[1:], self.config.model)
            if out.pixels is not None:
                flipped = VIEWS[view](out.pixels)
                pixels = flipped.copy() if pixels is None else np.add(pixels, flipped, out=pixels)
            if self.has_heads:
                heads = out.scores.copy() if heads is None else heads + out.scores
        n = len(self.views)
        if n > 1:  # the mean over views, in place: the first view's array is a copy
            pixels = None if pixels is None else np.divide(pixels, n, out=pixels)
            heads = None if heads is None else heads / n
        if self.temperature != 1.0:
            pixels = None if pixels is None else scale_logits(pixels, self.temperature)
            heads = None if heads is None else scale_logits(heads, self.temperature)
        return pixels, heads


def scale_logits(probs: np.ndarray, temperature: float) -> np.ndarray:
    """sigmoid(logit(p) / T): T > 1 softens probabilities towards 0.5, T < 1 sharpens them."""
    p = np.clip(probs.astype(np.float32, copy=False), 1e-7, 1 - 1e-7)
    logits = np.log(p) - np.log1p(-p)
    return (1.0 / (1.0 + np.exp(-logits / temperature))).astype(np.float32)


def combine(
    members: list[Member], results: list[tuple], num_classes: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Weighted mean per class over the members that predict it: (pixels (N, C, H, W) or None
    when no member has pixel outputs, heads (N, C) with NaN for a class no class head
    predicts, or None when no member has a class head)."""
    pixels = _weighted_mean([(m, r[0]) for m, r in zip(members, results) if r[0] is not None], num_classes)
    heads = _weighted_mean([(m, r[1]) for m, r in zip(members, results) if r[1] is not None], num_classes)
    return pixels, heads


def _weighted_mean(parts: list[tuple[Member, np.ndarray]], num_classes: int) -> np.ndarray | None:
    if not parts:
        return None
    if len(parts) == 1 and parts[0][0].channels == list(range(num_classes)):
        return parts[0][1]  # one member for every class: its own array (nothing to average)
    shape = (parts[0][1].shape[0], num_classes, *parts[0][1].shape[2:])
    total = np.zeros(shape, dtype=np.float32)
    weights = np.zeros(num_classes, dtype=np.float64)
    for member, values in parts:
        for j, c in enumerate(member.channels):
            total[:, c] += np.float32(member.weight) * values[:, j]
            weights[c] += member.weight
    covered = weights > 0
    total[:, covered] /= weights[covered].astype(np.float32).reshape(-1, *([1] * (total.ndim - 2)))
    if not covered.all():
        total[:, ~covered] = np.nan  # no member predicts it: not 0, which would be a real answer
    return total


def ensemble_outputs(pixels: np.ndarray | None, heads: np.ndarray | None, peaks) -> Outputs:
    """``Outputs`` of a combined batch: the class score is the class heads' where one predicts
    the class, else the peak of the pixel probabilities (``peaks``: (N, C, H, W) -> (N, C))."""
    if pixels is None:
        return Outputs(None, heads, heads)
    scores = peaks(pixels)
    if heads is not None:
        scores = np.where(np.isnan(heads), scores, heads).astype(np.float32)
    return Outputs(pixels, scores, heads)
