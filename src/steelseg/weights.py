"""Network weights in and out of run directories: safetensors only, so loading runs no code."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from steelseg.atomic import atomic_path
from steelseg.rundir import WEIGHTS, RunDirError


def save_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(run_dir) / WEIGHTS) as tmp:
        save_file(state, str(tmp))


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors; a missing or damaged file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunDirError(f"{path}: not a readable safetensors file ({err})") from None


def load_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> None:
    """Load a run's weights into ``model``; ``run_dir`` may also be a .safetensors file."""
    path = Path(run_dir) if str(run_dir).endswith(".safetensors") else Path(run_dir) / WEIGHTS
    try:
        model.load_state_dict(read_weights(path))
    except RuntimeError as err:
        raise RunDirError(f"{path}: weights do not fit the model in its config.yaml: {err}") from None
