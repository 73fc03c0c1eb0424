"""Loss registry: a plain dict from name to a factory; smp's losses where they exist."""

from __future__ import annotations

import torch
from segmentation_models_pytorch.losses import DiceLoss
from torch import nn

from steelseg.config import LossTerm


class WeightedSum(nn.Module):
    def __init__(self, parts: list[tuple[float, nn.Module]]):
        super().__init__()
        self.weights = [w for w, _ in parts]
        self.parts = nn.ModuleList(loss for _, loss in parts)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(w * loss(logits, target) for w, loss in zip(self.weights, self.parts))


LOSSES = {
    "bce": lambda **params: nn.BCEWithLogitsLoss(**params),
    "dice": lambda **params: DiceLoss(mode="multilabel", from_logits=True, **params),
}


def build_loss(terms: list[LossTerm], num_classes: int, head: str = "sigmoid") -> nn.Module:
    """The weighted sum of ``terms``: (logits (N, C, H, W), masks (N, C, H, W) float) -> scalar."""
    for term in terms:
        if term.name not in LOSSES:
            raise ValueError(f"unknown loss {term.name!r}; choose one of {', '.join(sorted(LOSSES))}")
    return WeightedSum([(term.weight, LOSSES[term.name](**term.params)) for term in terms])
