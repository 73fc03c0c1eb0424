"""The model kinds: ``MODELS = {task: builder}``, one entry per ``model.task``.

    segment   ``SegmentationNet``: any segmentation_models_pytorch architecture and encoder;
              one channel per class (sigmoid, multi-label; or softmax with a background one)
    two_head  ``SegmentationNet`` with smp's classification head on the encoder (4th place)
    classify  ``ClassifierNet``: an smp encoder (any timm backbone as "tu-<name>") and the same
              head alone (1st place)
    instance  ``instance.InstanceNet``: torchvision's Mask R-CNN

A new kind is a builder ``(ModelConfig, num_classes) -> nn.Module`` whose module has
``outputs`` (names from ``core.outputs.TASK_OUTPUTS``), ``forward`` (probabilities) and, to be
trained by the Lightning module, ``logits`` and ``activation``.
"""

from __future__ import annotations

from collections.abc import Callable

import segmentation_models_pytorch as smp
from torch import nn

from steelseg.config import ConfigError, ModelConfig
from steelseg.models.encoders import WeightsError, is_local_file, load_encoder_weights, offline_help
from steelseg.models.nets import ClassifierNet, SegmentationNet, avoid_bf16_crash, encoder_stride


def build_segmenter(config: ModelConfig, num_classes: int, class_head: bool = False) -> SegmentationNet:
    """An smp segmentation network (with smp's classification head when ``class_head``)."""
    heads = dict(classes=num_classes, pooling=config.class_pooling, dropout=config.class_dropout)
    net = _with_encoder_weights(
        config,
        lambda hub: smp.create_model(
            config.arch,
            encoder_name=config.encoder_name,
            encoder_weights=hub,
            in_channels=config.in_channels,
            classes=num_classes + (config.head == "softmax"),
            aux_params=heads if class_head else None,
            **config.arch_params,
        ),
    )
    return SegmentationNet(net, config.head, divisor=encoder_stride(net), class_head=class_head)


def build_two_head(config: ModelConfig, num_classes: int) -> SegmentationNet:
    return build_segmenter(config, num_classes, class_head=True)


def build_classifier(config: ModelConfig, num_classes: int) -> ClassifierNet:
    def create(hub: str | None) -> ClassifierNet:
        encoder = smp.encoders.get_encoder(config.encoder_name, in_channels=config.in_channels, weights=hub)
        return ClassifierNet(encoder, num_classes, config.class_pooling, config.class_dropout)

    return _with_encoder_weights(config, create)


def build_instance(config: ModelConfig, num_classes: int) -> nn.Module:
    from steelseg.models.instance import InstanceNet  # torchvision's detection models, only when asked

    return InstanceNet(
        config.encoder_name, config.in_channels, num_classes, config.encoder_weights, **config.arch_params
    )


MODELS: dict[str, Callable[[ModelConfig, int], nn.Module]] = {
    "segment": build_segmenter,
    "classify": build_classifier,
    "two_head": build_two_head,
    "instance": build_instance,
}


def build_model(config: ModelConfig, num_classes: int) -> nn.Module:
    """Create the network of ``config`` for ``num_classes`` defect classes."""
    if config.task not in MODELS:
        raise ConfigError(f"model.task {config.task!r}: unknown; choose one of {', '.join(MODELS)}")
    return MODELS[config.task](config, num_classes)


def _with_encoder_weights(config: ModelConfig, create: Callable[[str | None], nn.Module]) -> nn.Module:
    """``create(hub weights name or None)``, then the local weights file if the config names one."""
    weights = config.encoder_weights
    local_file = is_local_file(weights)
    try:
        net = create(None if local_file else weights)
    except KeyError:
        raise ConfigError(_unknown_encoder(config)) from None
    except RuntimeError as err:
        if str(err).startswith("Unknown model"):  # timm's word for a tu- name it lacks
            raise ConfigError(_unknown_encoder(config)) from None
        raise
    except Exception as err:  # the hub raises many kinds of network errors
        if weights is None:
            raise
        raise WeightsError(offline_help(config, err)) from err
    if local_file:
        load_encoder_weights(net.encoder, weights)
    avoid_bf16_crash(net)
    return net


def _unknown_encoder(config: ModelConfig) -> str:
    """One line: the unknown name, the nearest known ones, and timm's ``tu-`` prefix."""
    import difflib

    import segmentation_models_pytorch as smp

    name = config.encoder_name
    if name.startswith("tu-"):
        import timm

        near = ["tu-" + n for n in difflib.get_close_matches(name[3:], timm.list_models(), n=3, cutoff=0.6)]
    else:
        near = difflib.get_close_matches(name, smp.encoders.get_encoder_names(), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(near)}? " if near else ""
    return (
        f"model.encoder_name {config.encoder_name!r} is not an encoder of model.arch {config.arch!r}: {hint}"
        "smp's names (resnet18, efficientnet-b0, ...) or any timm model as tu-<name>"
    )
