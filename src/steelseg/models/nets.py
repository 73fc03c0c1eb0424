"""The torch modules behind the model kinds (``registry.MODELS``), each with named outputs
(``core.outputs.TASK_OUTPUTS``).

Every network's ``forward`` gives probabilities, one tensor per name of its ``outputs``; all
but Mask R-CNN also give ``logits`` (a dict by name) and ``activation`` for training.
Segmentation inputs whose sides are not a multiple of the encoder's stride are padded and the
output cropped back, so any image size works.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import ClassificationHead
from torch import nn

from steelseg.core.outputs import CLASSES, PIXELS, TASK_OUTPUTS


class SegmentationNet(nn.Module):
    """An smp network with the one path from input to per-class probabilities.

    ``logits``: zero-pad H and W up to a multiple of ``divisor``, run the network, crop back.
    ``forward``: the activation of those logits, i.e. probabilities at the network's
    resolution. Validation, the Predictor's backends, out-of-fold files and the ONNX export
    all call ``forward`` and then ``core.outputs.to_image``, so the same image gives the same
    probabilities everywhere (they drifted when validation resized logits and prediction
    resized probabilities). With a class head (two_head) the outputs are the pixel
    probabilities and the class probabilities, in that order.
    """

    def __init__(self, net: nn.Module, head: str = "sigmoid", divisor: int = 32, class_head: bool = False):
        super().__init__()
        self.net = net
        self.head = head
        self.divisor = divisor
        self.outputs = TASK_OUTPUTS["two_head" if class_head else "segment"]

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, in_channels, H, W) -> {PIXELS: (N, C [+1 background with softmax], H, W)} logits,
        and {CLASSES: (N, C)} with a class head."""
        height, width = x.shape[-2:]
        # Always pad, even by zero: a traced or exported graph then pads every input size,
        # not just sizes like the one it was traced at.
        x = F.pad(x, (0, (-width) % self.divisor, 0, (-height) % self.divisor))
        out = self.net(x)
        if isinstance(out, tuple):  # smp with aux_params: (masks, labels)
            return {PIXELS: out[0][..., :height, :width], CLASSES: out[1]}
        return {PIXELS: out[..., :height, :width]}

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(N, in_channels, H, W) -> (N, C, H, W) per-class defect probabilities [, (N, C)].

        sigmoid: one independent channel per class; softmax: channel 0, the background, dropped.
        """
        return _as_outputs(self.activation(self.logits(x)), self.outputs)

    def activation(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Logits -> probabilities, by name; ``forward`` is ``activation(logits(x))``, spelled
        out for training, which needs the logits for its loss as well."""
        # In fp32 even under autocast: bf16 probabilities step by 0.004 near 1, so thresholds,
        # class scores and rankings would tie in coarse steps.
        probs = {name: torch.sigmoid(value.float()) for name, value in logits.items()}
        if self.head == "softmax":
            probs[PIXELS] = torch.softmax(logits[PIXELS].float(), dim=1)[:, 1:]
        return probs


class ClassifierNet(nn.Module):
    """Multi-label classifier: an encoder's deepest features, pooled, dropout, one linear layer;
    one sigmoid per class. No padding: pooling takes any size, and padding would add black
    steel to what the image is judged on."""

    head = "sigmoid"
    outputs = TASK_OUTPUTS["classify"]

    def __init__(self, encoder: nn.Module, num_classes: int, pooling: str = "avg", dropout: float = 0.2):
        super().__init__()
        self.encoder = encoder
        self.classifier = ClassificationHead(encoder.out_channels[-1], num_classes, pooling=pooling, dropout=dropout)
        self.divisor = encoder_stride(self)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {CLASSES: self.classifier(self.encoder(x)[-1])}

    def activation(self, logits: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {name: torch.sigmoid(value.float()) for name, value in logits.items()}  # fp32: as above

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_channels, H, W) -> (N, C) probability that each class is in the image."""
        return _as_outputs(self.activation(self.logits(x)), self.outputs)


def _as_outputs(values: dict[str, torch.Tensor], names: tuple[str, ...]):
    return values[names[0]] if len(names) == 1 else tuple(values[name] for name in names)


def net_outputs(net: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Any network's probabilities by output name (what ``forward`` gives, named)."""
    out = net(x)
    return dict(zip(net.outputs, out if isinstance(out, tuple) else (out,)))


class Fp32Conv2d(nn.Conv2d):
    """A Conv2d that always computes in fp32, even under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


def avoid_bf16_crash(net: nn.Module) -> None:
    """PyTorch 2.14's CPU bf16 convolution corrupts the heap in the backward pass of a conv
    from more than 2048 channels to 1 (oneDNN; e.g. the SCSE attention of a U-Net on a
    resnet50-class encoder, whose first decoder block has 3072 channels), and the process
    aborts. Those convs, one output channel each, run in fp32: no cost worth measuring, the
    same weights and state-dict keys."""
    for module in net.modules():
        if type(module) is nn.Conv2d and module.out_channels == 1 and module.in_channels > 2048:
            module.__class__ = Fp32Conv2d


def encoder_stride(net: nn.Module) -> int:
    return int(getattr(net.encoder, "output_stride", 32) or 32)
