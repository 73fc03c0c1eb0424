"""The loss of a distilled student: alpha x soft loss + (1 - alpha) x the recipe's loss.

The soft loss is binary cross-entropy against the teacher's probabilities: per pixel for pixel
outputs, per class for class heads. A class head's target in a training crop is the teacher's
largest pixel probability in that crop, as its true label is "the class has a pixel in the
crop" (``module.labels_of``); a teacher without pixel probabilities gives its image scores.
The recipe's loss sees only the images that have masks: unlabelled images teach through the
teacher alone."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from steelseg.config import DistillConfig
from steelseg.core.outputs import CLASSES, PIXELS

_EPS = 1e-6  # probabilities kept off 0 and 1, where their logits are infinite


def soft_bce(logits: torch.Tensor, target: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean BCE of ``logits`` against probabilities ``target`` (same shape). At temperature T both
    are softened (logits / T, the target's logit / T) and the loss is scaled by T^2 (Hinton et al.)."""
    if temperature == 1.0:
        return F.binary_cross_entropy_with_logits(logits, target)
    softened = torch.sigmoid(torch.logit(target.clamp(_EPS, 1 - _EPS)) / temperature)
    return F.binary_cross_entropy_with_logits(logits / temperature, softened) * temperature**2


def soft_loss(
    logits: dict[str, torch.Tensor], soft: dict[str, torch.Tensor], temperature: float, class_weight: float
) -> torch.Tensor:
    """The student's logits by output name against the teacher's targets of the batch (``soft``:
    "pixels" (N, C, H, W) where the teacher has them, "scores" (N, C))."""
    total = torch.zeros((), device=soft["scores"].device)
    pixels = soft.get("pixels")
    if PIXELS in logits:
        total = total + soft_bce(logits[PIXELS].float(), pixels, temperature)
    if CLASSES in logits:
        target = soft["scores"] if pixels is None else pixels.flatten(2).amax(dim=2)
        total = total + class_weight * soft_bce(logits[CLASSES].float(), target, temperature)
    return total


def distill_loss(
    recipe_loss: Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor],
    logits: dict[str, torch.Tensor],
    masks: torch.Tensor,
    soft: dict[str, torch.Tensor],
    config: DistillConfig,
    class_weight: float,
) -> torch.Tensor:
    """alpha x ``soft_loss`` + (1 - alpha) x ``recipe_loss`` on the labelled images of the batch."""
    labelled = soft["labelled"] > 0.5
    total = config.alpha * soft_loss(logits, soft, config.temperature, class_weight)
    if config.alpha < 1 and bool(labelled.any()):
        hard = recipe_loss({name: value[labelled] for name, value in logits.items()}, masks[labelled])
        total = total + (1 - config.alpha) * hard
    return total
