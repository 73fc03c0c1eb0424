"""Loss registry: a plain dict from name to a factory; smp's losses where they exist."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn


class WeightedSum(nn.Module):
    def __init__(self, parts: list[tuple[float, nn.Module]]):
        super().__init__()
        self.weights = [w for w, _ in parts]
        self.parts = nn.ModuleList(loss for _, loss in parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.parts))


LOSSES = {
    "bce": lambda: nn.BCEWithLogitsLoss(),
    "dice": lambda: DiceLoss(mode="multilabel", from_logits=True),
    "bce_dice": lambda: WeightedSum([(0.5, nn.BCEWithLogitsLoss()), (0.5, DiceLoss(mode="multilabel", from_logits=True))]),
}


def build_loss(name: str) -> nn.Module:
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(sorted(LOSSES))}")
    return LOSSES[name]()
