"""The instance model family: a torchvision Mask R-CNN behind the segmentation contract.

It trains on the per-class masks every other model trains on (split into connected-component
instances by ``instances.instances_from_masks``) and answers what every other model answers:
(N, C, H, W) per-class defect probabilities, the detections merged back per class. So the
validation loop, the threshold search, the Predictor and the metric need not know that this
network thinks in boxes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import FrozenBatchNorm2d

from steelseg.core.instances import instances_from_masks

# resnet_fpn_backbone builds torchvision's resnets only.
ENCODERS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
)


def default_maskrcnn_kwargs() -> dict[str, Any]:
    """Mask R-CNN settings for steel strips (any of them can be overridden by keyword).

    Anchors: sizes 16-256 instead of torchvision's 32-512, because a strip is 256 pixels high
    and class-1 pits are a few pixels across. Aspect ratios (h/w) 1/2 to 8 instead of 1/2 to
    2, because the annotated defects are mostly tall and thin: in the severstal-mini rows the
    connected components run from 19x19 to 22x256 and 14x193 (w x h), few are wider than tall
    and none below h/w 1/2. box_score_thresh stays at torchvision's 0.05: the scores become
    probabilities that the tuned post-processing thresholds, so weak detections are its to
    drop. 50 detections per image (torchvision: 100) is still several times the most defects
    seen in one image, and halves the mask head's cost, which dominates inference on CPU.
    """
    return {
        "rpn_anchor_generator": AnchorGenerator(
            sizes=((16,), (32,), (64,), (128,), (256,)),
            aspect_ratios=((0.5, 1.0, 2.0, 4.0, 8.0),) * 5,
        ),
        "box_score_thresh": 0.05,
        "box_detections_per_img": 50,
    }


class _NoResizeTransform(GeneralizedRCNNTransform):
    """Batches and pads to a multiple of 32 but never resizes: the input is already at the
    network's resolution, chosen by the data pipeline like for every other model."""

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        return image, target


class InstanceNet(nn.Module):
    """Mask R-CNN on a resnet-FPN backbone, with probabilities out like ``SegmentationNet``.

    ``forward(x)``: (N, in_channels, h, w) standardised float -> (N, C, h, w) float32
    probabilities. ``losses(x, masks)``: the summed Mask R-CNN training losses, a scalar.
    """

    outputs = ("probabilities",)
    head = "sigmoid"  # classes are independent maps, as with a sigmoid head
    divisor = 32

    def __init__(
        self,
        encoder_name: str,
        in_channels: int,
        num_classes: int,
        encoder_weights: str | None = None,
        **maskrcnn_kwargs: Any,
    ):
        super().__init__()
        if encoder_name not in ENCODERS:
            from steelseg.config import ConfigError

            raise ConfigError(f"unknown encoder {encoder_name!r} for the instance model; valid: {', '.join(ENCODERS)}")
        if in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3, got {in_channels}")
        self.num_classes = num_classes
        # torchvision's own rule (maskrcnn_resnet50_fpn): frozen statistics for pretrained
        # weights, since detection batches are too small to estimate them; BatchNorm2d when
        # training from scratch, where an identity "frozen" norm would leave the deep
        # activations unnormalised.
        norm_layer = nn.BatchNorm2d if encoder_weights is None else FrozenBatchNorm2d
        backbone = resnet_fpn_backbone(
            backbone_name=encoder_name, weights=None, norm_layer=norm_layer, trainable_layers=5
        )
        if in_channels == 1:
            conv1 = backbone.body.conv1
            backbone.body.conv1 = nn.Conv2d(
                1, conv1.out_channels, conv1.kernel_size, conv1.stride, conv1.padding, bias=False
            )
            # torchvision's resnet init, which a plain Conv2d does not get
            nn.init.kaiming_normal_(backbone.body.conv1.weight, mode="fan_out", nonlinearity="relu")
        _load_encoder(backbone.body, encoder_name, encoder_weights, in_channels)
        self.maskrcnn = MaskRCNN(
            backbone, num_classes=num_classes + 1, **{**default_maskrcnn_kwargs(), **maskrcnn_kwargs}
        )
        # The inputs are standardised by the data pipeline already: mean 0 and std 1 here.
        self.maskrcnn.transform = _NoResizeTransform(
            min_size=1,
            max_size=1,
            image_mean=[0.0] * in_channels,
            image_std=[1.0] * in_channels,
            size_divisible=self.divisor,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, h, w) -> (N, C, h, w) float32 per-class probabilities, in either
        mode (the detector always runs its inference path here)."""
        height, width = x.shape[-2:]
        with _fp32(x), _detector_mode(self.maskrcnn, training=False):
            detections = self.maskrcnn(list(x.float()))
        return torch.stack(
            [merge_instances(d["labels"], d["scores"], d["masks"], self.num_classes, height, width) for d in detections]
        )

    def losses(self, x: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """x (N, in_channels, h, w), masks (N, C, h, w) in {0, 1} -> the summed Mask R-CNN
        losses (RPN objectness and boxes, classifier, boxes, masks), a scalar; in either mode
        (validation computes its loss in eval mode)."""
        targets = [_targets(image_masks, x.device) for image_masks in masks]
        with _fp32(x), _detector_mode(self.maskrcnn, training=True):
            loss_dict = self.maskrcnn(list(x.float()), targets)
        return torch.stack(list(loss_dict.values())).sum()


def merge_instances(
    labels: torch.Tensor, scores: torch.Tensor, masks: torch.Tensor, num_classes: int, height: int, width: int
) -> torch.Tensor:
    """Detections -> (C, H, W) float32 per-class probabilities.

    labels (K,) 1-based, scores (K,), masks (K, 1, H, W) mask probabilities as Mask R-CNN
    returns them. A pixel of class c is the largest score * mask probability of the class-c
    instances over it (max, not sum: overlapping boxes of one defect must not add up past 1),
    0 where there is none.
    """
    weighted = scores.float()[:, None] * masks.float().reshape(len(labels), height * width)
    merged = weighted.new_zeros(num_classes, height * width)
    index = (labels.long() - 1)[:, None].expand_as(weighted)
    return merged.scatter_reduce_(0, index, weighted, reduce="amax").reshape(num_classes, height, width)


def _targets(masks: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    boxes, labels, instance_masks = instances_from_masks(masks.detach().cpu().numpy() > 0.5)
    return {
        "boxes": torch.from_numpy(boxes).to(device),
        "labels": torch.from_numpy(labels).to(device),
        "masks": torch.from_numpy(instance_masks).to(device),
    }


@contextmanager
def _detector_mode(maskrcnn: MaskRCNN, training: bool) -> Iterator[None]:
    # torchvision chooses losses or detections by ``training``. The backbone keeps the mode
    # its caller set: a validation loss must neither use batch statistics nor update the
    # running ones of a BatchNorm2d backbone.
    saved = [(module, module.training) for module in maskrcnn.modules()]
    backbone = set(maskrcnn.backbone.modules())
    for module, _ in saved:
        if module not in backbone:
            module.training = training
    try:
        yield
    finally:
        for module, was_training in saved:
            module.training = was_training


def _fp32(x: torch.Tensor) -> torch.autocast:
    # Under CPU bf16 autocast torchvision's box coding follows the dtype of the regression
    # outputs, so proposals and detected boxes come out in bf16 (measured, torch 2.14 /
    # torchvision 0.29): beyond x = 1024 on a 1600-wide strip a box edge can only sit on
    # every 8th pixel, narrower than a class-1 pit, and probabilities moved by up to 0.5 from
    # fp32. Running the backbone alone in bf16 saved only ~5% (the heads, the box coding
    # and the mask pasting dominate), so the whole detector runs in fp32.
    return torch.autocast(device_type=x.device.type, enabled=False)


def _load_encoder(body: nn.Module, encoder_name: str, weights: str | None, in_channels: int) -> None:
    if weights is None:
        return
    from steelseg.models.encoders import WeightsError, load_encoder_weights

    if weights != "imagenet":
        load_encoder_weights(body, weights)
        return
    pretrained = torchvision.models.get_model_weights(encoder_name).DEFAULT
    try:
        state = pretrained.get_state_dict(progress=False)
    except Exception as err:  # the hub raises many kinds of network errors
        raise WeightsError(_offline_help(encoder_name, pretrained.url, err)) from err
    if in_channels == 1:  # a gray image: the pretrained response is the sum over RGB
        state["conv1.weight"] = state["conv1.weight"].sum(dim=1, keepdim=True)
    body.load_state_dict(state, strict=False)  # the classifier (fc) has no place here


def _offline_help(encoder_name: str, url: str, err: Exception) -> str:
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"could not load 'imagenet' weights for encoder {encoder_name!r} ({type(err).__name__}: {err}). "
        f"steelseg never needs the network: either copy {url.rsplit('/', 1)[-1]} into {cache} on this machine, "
        "or download the file elsewhere and set model.encoder_weights to its path (.safetensors or .pth), "
        "or train from scratch with model.encoder_weights=null."
    )
