"""The networks, one per ``model.task``, each with named outputs (``gating.TASK_OUTPUTS``):

    segment   ``SegmentationNet``: any segmentation_models_pytorch architecture and encoder;
              one channel per class (sigmoid, multi-label; or softmax with a background one)
    two_head  ``SegmentationNet`` with smp's classification head on the encoder (4th place)
    classify  ``ClassifierNet``: an smp encoder (any timm backbone as "tu-<name>") and the same
              head alone (1st place)
    instance  ``instance_net.InstanceNet``: torchvision's Mask R-CNN

Every network's ``forward`` gives probabilities, one tensor per name of its ``outputs``; all
but Mask R-CNN also give ``logits`` (a dict by name) and ``activation`` for training.
Segmentation inputs whose sides are not a multiple of the encoder's stride are padded and the
output cropped back, so any image size works.
"""

from __future__ import annotations

from pathlib import Path

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from segmentation_models_pytorch.base import ClassificationHead
from torch import nn

from steelseg.config import ConfigError, ModelConfig
from steelseg.errors import SteelsegError
from steelseg.gating import CLASSES, PIXELS, TASK_OUTPUTS


class WeightsError(SteelsegError, RuntimeError):
    """Encoder weights that were asked for but cannot be had."""


class SegmentationNet(nn.Module):
    """An smp network with the one path from input to per-class probabilities.

    ``logits``: zero-pad H and W up to a multiple of ``divisor``, run the network, crop back.
    ``forward``: the activation of those logits, i.e. probabilities at the network's
    resolution. Validation, the Predictor's backends, out-of-fold files and the ONNX export
    all call ``forward`` and then ``gating.to_image``, so the same image gives the same
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
        self.divisor = _stride(self)

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


def build_model(config: ModelConfig, num_classes: int) -> nn.Module:
    """Create the network of ``config`` for ``num_classes`` defect classes."""
    if config.task == "instance":
        from steelseg.instance_net import InstanceNet  # torchvision's detection models, only when asked

        return InstanceNet(config.encoder_name, config.in_channels, num_classes, config.encoder_weights, **config.arch_params)
    weights = config.encoder_weights
    local_file = weights is not None and weights not in _HUB_WEIGHTS
    hub = None if local_file else weights
    try:
        if config.task == "classify":
            encoder = smp.encoders.get_encoder(config.encoder_name, in_channels=config.in_channels, weights=hub)
            net = ClassifierNet(encoder, num_classes, config.class_pooling, config.class_dropout)
        else:
            heads = dict(classes=num_classes, pooling=config.class_pooling, dropout=config.class_dropout)
            net = smp.create_model(
                config.arch,
                encoder_name=config.encoder_name,
                encoder_weights=hub,
                in_channels=config.in_channels,
                classes=num_classes + (config.head == "softmax"),
                aux_params=heads if config.task == "two_head" else None,
                **config.arch_params,
            )
    except KeyError as err:
        raise ConfigError(f"unknown architecture or encoder: {err}") from None
    except Exception as err:  # the hub raises many kinds of network errors
        if weights is None:
            raise
        raise WeightsError(_offline_help(config, err)) from err
    if local_file:
        load_encoder_weights(net.encoder, weights)
    _avoid_bf16_crash(net)
    if config.task == "classify":
        return net
    return SegmentationNet(net, config.head, divisor=_stride(net), class_head=config.task == "two_head")


class Fp32Conv2d(nn.Conv2d):
    """A Conv2d that always computes in fp32, even under autocast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=x.device.type, enabled=False):
            return super().forward(x.float())


def _avoid_bf16_crash(net: nn.Module) -> None:
    """PyTorch 2.14's CPU bf16 convolution corrupts the heap in the backward pass of a conv
    from more than 2048 channels to 1 (oneDNN; e.g. the SCSE attention of a U-Net on a
    resnet50-class encoder, whose first decoder block has 3072 channels), and the process
    aborts. Those convs, one output channel each, run in fp32: no cost worth measuring, the
    same weights and state-dict keys."""
    for module in net.modules():
        if type(module) is nn.Conv2d and module.out_channels == 1 and module.in_channels > 2048:
            module.__class__ = Fp32Conv2d


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load pretrained encoder weights from a local ``.safetensors`` or ``.pth`` file.

    ``.pth`` files are read with ``weights_only=True`` (``weights.read_torch_file``): a file
    holding any pickled object but tensors is refused in one line, never run. A 3-channel first
    convolution is summed over its input channels for a 1-channel encoder, which is what the
    pretrained response to a gray image is.
    """
    from steelseg.weights import read_torch_file, read_weights  # safetensors: only when a file is given

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: encoder weights file not found")
    if path.suffix == ".safetensors":
        state = read_weights(path)
    else:
        state = read_torch_file(path)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise WeightsError(f"{path}: not a state dict of tensors (found a {type(state).__name__})")
    state = {key: value for key, value in state.items() if isinstance(value, torch.Tensor)}
    own = encoder.state_dict()
    for key, tensor in state.items():
        if key in own and tensor.ndim == 4 and own[key].shape[1] != tensor.shape[1] and own[key].shape[1] == 1:
            state[key] = tensor.sum(dim=1, keepdim=True)
    if not set(state) & set(own):
        raise WeightsError(f"{path}: no tensor matches the encoder (first keys: {list(state)[:3]})")
    encoder.load_state_dict(state, strict=False)


_HUB_WEIGHTS = ("imagenet", "ssl", "swsl", "instagram", "advprop", "noisy-student", "imagenet21k")


def _stride(net: nn.Module) -> int:
    return int(getattr(net.encoder, "output_stride", 32) or 32)


def _offline_help(config: ModelConfig, err: Exception) -> str:
    return (
        f"could not load {config.encoder_weights!r} weights for encoder {config.encoder_name!r} "
        f"({type(err).__name__}: {err}). steelseg never needs the network: either copy the weights "
        "into the torch hub / Hugging Face cache on this machine, or download the file elsewhere and "
        "set model.encoder_weights to its path (.safetensors or .pth), or train from scratch with "
        "model.encoder_weights=null."
    )
