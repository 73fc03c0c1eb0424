"""Loss registry: a plain dict from name to factory, built on smp's losses.

Every built loss is called as ``loss(logits, masks)``: ``masks`` are the multi-label targets
(N, C, H, W) in {0, 1}, never overlapping; ``logits`` are (N, C, H, W) for the sigmoid head and
(N, C + 1, H, W) for the softmax head, whose channel 0 is background. Softmax terms see the
masks as a class-index map (``class_index_map``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from segmentation_models_pytorch.losses import (
    DiceLoss,
    FocalLoss,
    LovaszLoss,
    SoftBCEWithLogitsLoss,
    SoftCrossEntropyLoss,
)
from segmentation_models_pytorch.losses._functional import softmax_focal_loss_with_logits
from torch import nn

from steelseg.config import ConfigError, LossTerm

HEADS = ("sigmoid", "softmax")


def class_index_map(masks: torch.Tensor) -> torch.Tensor:
    """Masks (N, C, H, W) in {0, 1} -> long (N, H, W): 0 where no class is set, else 1 + class."""
    labelled = (masks > 0.5).any(dim=1)
    return torch.where(labelled, masks.argmax(dim=1) + 1, 0)


class OnClassIndex(nn.Module):
    """Gives a softmax-head loss the class-index map (N, H, W) in place of the masks (N, C, H, W)."""

    def __init__(self, loss: nn.Module):
        super().__init__()
        self.loss = loss

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.loss(logits, class_index_map(masks))


class SoftmaxFocalLoss(nn.Module):
    """smp's softmax focal loss: (logits (N, K, H, W), class index (N, H, W) long) -> scalar.

    smp's ``FocalLoss(mode="multiclass")`` is a one-vs-rest *sigmoid* focal per channel, which
    would train softmax logits as if they were independent; this is the softmax form."""

    def __init__(self, gamma: float = 2.0, normalized: bool = False, reduced_threshold: float | None = None):
        super().__init__()
        self.gamma, self.normalized, self.reduced_threshold = gamma, normalized, reduced_threshold

    def forward(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return softmax_focal_loss_with_logits(
            logits,
            index,
            gamma=self.gamma,
            normalized=self.normalized,
            reduced_threshold=self.reduced_threshold,
        )


class WeightedSum(nn.Module):
    """sum(weight * term(logits, masks)) over the terms, after checking both shapes."""

    def __init__(self, parts: list[tuple[float, nn.Module]], num_classes: int, head: str):
        super().__init__()
        self.weights = [weight for weight, _ in parts]
        self.parts = nn.ModuleList(loss for _, loss in parts)
        self.num_classes = num_classes
        self.channels = num_classes + (head == "softmax")  # softmax adds a background channel

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        n, _, *size = masks.shape
        if masks.shape[1] != self.num_classes or list(logits.shape) != [n, self.channels, *size]:
            raise ConfigError(
                f"logits {tuple(logits.shape)} and masks {tuple(masks.shape)} do not fit a loss built "
                f"for {self.num_classes} classes and {self.channels} logit channels"
            )
        return sum(weight * loss(logits, masks) for weight, loss in zip(self.weights, self.parts))


def _require(head: str, needed: str, name: str) -> None:
    if head != needed:
        raise ConfigError(f"loss {name!r} needs head={needed!r}, not head={head!r}")


def _smoothing(value: float) -> float:
    if not 0.0 <= value < 1.0:
        raise ConfigError(f"label_smoothing must be in [0, 1), got {value}")
    return float(value)


def _bce(
    head: str, num_classes: int, pos_weight: Sequence[float] | None = None, label_smoothing: float = 0.0
) -> nn.Module:
    """Binary cross-entropy, mean over (N, C, H, W); ``pos_weight`` weighs each class's positives
    and ``label_smoothing`` s turns targets y into y * (1 - s) + s / 2."""
    _require(head, "sigmoid", "bce")
    if pos_weight is not None:
        if len(pos_weight) != num_classes:
            raise ConfigError(f"bce pos_weight has {len(pos_weight)} values but there are {num_classes} classes")
        # (C, 1, 1) broadcasts over the class axis of (N, C, H, W); a flat (C,) would hit W
        pos_weight = torch.tensor(pos_weight, dtype=torch.float32).view(-1, 1, 1)
    # smp's smooth_factor f makes targets y * (1 - 2f) + f, hence f = s / 2
    return SoftBCEWithLogitsLoss(pos_weight=pos_weight, smooth_factor=_smoothing(label_smoothing) / 2)


def _dice(head: str, num_classes: int, **params) -> nn.Module:
    """smp's soft Dice, per class over the whole batch, averaged over classes; a class absent from
    the batch's targets adds 0 to that average. Softmax: background is class 0 (``classes`` picks)."""
    if head == "sigmoid":
        return DiceLoss(mode="multilabel", from_logits=True, **params)
    return OnClassIndex(DiceLoss(mode="multiclass", from_logits=True, **params))


def _focal(head: str, num_classes: int, **params) -> nn.Module:
    """Sigmoid: smp's multi-label focal (gamma, alpha: weight of positives, None = unweighted),
    mean over pixels per class then over classes. Softmax: softmax focal (gamma), mean over pixels."""
    if head == "sigmoid":
        return FocalLoss(mode="multilabel", **params)
    return OnClassIndex(SoftmaxFocalLoss(**params))


class PerMaskLovasz(nn.Module):
    """Lovasz hinge of every (image, class) mask on its own, then averaged: the competition
    scores each pair separately, while smp's multilabel mode pools an image's classes."""

    def __init__(self, per_image: bool = True):
        super().__init__()
        self.loss = LovaszLoss(mode="binary", per_image=per_image)

    def forward(self, logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        return self.loss(logits.flatten(0, 1)[:, None], masks.flatten(0, 1)[:, None])


def _lovasz(head: str, num_classes: int, per_image: bool = True) -> nn.Module:
    """Sigmoid: Lovasz hinge per (image, class) mask; softmax: Lovasz-softmax over the classes
    present. ``per_image=False`` pools all pixels of the batch instead."""
    if head == "sigmoid":
        return PerMaskLovasz(per_image)
    return OnClassIndex(LovaszLoss(mode="multiclass", per_image=per_image))


def _ce(head: str, num_classes: int, label_smoothing: float = 0.0) -> nn.Module:
    """Cross-entropy on the class-index map, mean over pixels; smoothing as torch's ``label_smoothing``."""
    _require(head, "softmax", "ce")
    return OnClassIndex(SoftCrossEntropyLoss(smooth_factor=_smoothing(label_smoothing)))


# name -> factory(head, num_classes, **params) -> loss(logits, masks)
LOSSES: dict[str, Callable[..., nn.Module]] = {
    "bce": _bce,
    "dice": _dice,
    "focal": _focal,
    "lovasz": _lovasz,
    "ce": _ce,
}


def _build_term(term: LossTerm, num_classes: int, head: str) -> nn.Module:
    if term.name not in LOSSES:
        raise ConfigError(f"unknown loss {term.name!r}; choose one of {', '.join(sorted(LOSSES))}")
    try:
        return LOSSES[term.name](head, num_classes, **term.params)
    except TypeError as error:  # a misspelt parameter or one the head's loss does not take
        raise ConfigError(f"loss {term.name!r} (head={head!r}), params {term.params}: {error}") from error


def build_loss(terms: Sequence[LossTerm], num_classes: int, head: str = "sigmoid") -> nn.Module:
    """The weighted sum of ``terms`` as a module:
    (logits (N, C or C + 1, H, W), masks (N, C, H, W)) -> scalar."""
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    if not terms:
        raise ConfigError("the loss needs at least one term")
    parts = [(term.weight, _build_term(term, num_classes, head)) for term in terms]
    return WeightedSum(parts, num_classes, head)
