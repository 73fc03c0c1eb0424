"""Pretrained encoder weights: a hub name (downloaded by smp/timm into their caches) or a local
``.safetensors`` / ``.pth`` file. Nothing here downloads on its own; when the hub fails, the
error says how to proceed offline."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from steelseg.config import ModelConfig
from steelseg.errors import SteelsegError

HUB_WEIGHTS = ("imagenet", "ssl", "swsl", "instagram", "advprop", "noisy-student", "imagenet21k")


class WeightsError(SteelsegError, RuntimeError):
    """Encoder weights that were asked for but cannot be had."""


def is_local_file(weights: str | None) -> bool:
    """Whether ``model.encoder_weights`` names a file rather than a hub's weights (or none)."""
    return weights is not None and weights not in HUB_WEIGHTS


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load pretrained encoder weights from a local ``.safetensors`` or ``.pth`` file.

    ``.pth`` files are read with ``weights_only=True`` (``models.weights.read_torch_file``): a file
    holding any pickled object but tensors is refused in one line, never run. A 3-channel first
    convolution is summed over its input channels for a 1-channel encoder, which is what the
    pretrained response to a gray image is.
    """
    from steelseg.models.weights import read_torch_file, read_weights  # safetensors: only when a file is given

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


def offline_help(config: ModelConfig, err: Exception) -> str:
    return (
        f"could not load {config.encoder_weights!r} weights for encoder {config.encoder_name!r} "
        f"({type(err).__name__}: {err}). steelseg never needs the network: either copy the weights "
        "into the torch hub / Hugging Face cache on this machine, or download the file elsewhere and "
        "set model.encoder_weights to its path (.safetensors or .pth), or train from scratch with "
        "model.encoder_weights=null."
    )
