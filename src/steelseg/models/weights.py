"""Network weights in and out of run directories: safetensors only, so loading runs no code.

Every weights file written here gets its SHA-256 recorded beside it (``rundir.writing_weights``)
and every one read is checked against that record first (``rundir.verify_weights``). The few
pickled files steelseg reads (the resume checkpoint, ``.pth`` encoder weights) go through
``read_torch_file``: ``torch.load(weights_only=True)``, which refuses any pickled object but
tensors and plain containers instead of running it, with a one-line error.
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from steelseg.files import rundir
from steelseg.files.rundir import WEIGHTS, RunDirError


def save_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with rundir.writing_weights(Path(run_dir) / WEIGHTS) as tmp:
        save_file(state, str(tmp))


def read_weights(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A safetensors file's tensors, checked against its recorded SHA-256; a missing, damaged or
    changed file is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file not found")
    rundir.verify_weights(path)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise RunDirError(f"{path}: not a readable safetensors file ({_first_line(err)})") from None


CLASS_HEAD = "net.classification_head."  # smp's aux_params head: what a two_head net adds to a segment net


def load_weights(run_dir: str | os.PathLike, model: torch.nn.Module, new_class_head: bool = False) -> None:
    """Load a run's weights into ``model``; ``run_dir`` may also be a .safetensors file, or a folder
    smp's ``save_pretrained`` wrote (``export --format smp``), whose keys are those of the smp
    network a segment or two_head model wraps as ``net``. With ``new_class_head`` (``init_from``
    into a two_head model) the weights of a segment network of the same shape load too, and the
    class head keeps its fresh initialisation: e.g. a two-headed student started from the
    teacher's own U-Net. Every other mismatch is refused."""
    path = Path(run_dir) if str(run_dir).endswith(".safetensors") else Path(run_dir) / WEIGHTS
    if Path(run_dir).is_file() and path != Path(run_dir):
        # A .pth or .ckpt here would have to be unpickled: weights come as safetensors only.
        raise RunDirError(f"{run_dir}: not a run directory or a .safetensors file; other weights files are not loaded")
    state = read_weights(path)
    what = "the model in its config.yaml"
    if is_smp_folder(run_dir):
        state, what = {f"net.{key}": value for key, value in state.items()}, "this run's model (arch, encoder, classes)"
    if new_class_head:
        own = model.state_dict()
        missing = own.keys() - state.keys()
        if missing and state.keys() <= own.keys() and all(key.startswith(CLASS_HEAD) for key in missing):
            state = {**{key: own[key] for key in missing}, **state}  # the head keeps its initialisation
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise RunDirError(f"{path}: weights do not fit {what}: {err}") from None


def is_smp_folder(path: str | os.PathLike) -> bool:
    """A folder of smp's ``save_pretrained`` (its config.json names the model class), not a run."""
    config = Path(path) / "config.json"
    return config.is_file() and not (Path(path) / rundir.CONFIG).is_file() and '"_model_class"' in config.read_text()


def read_torch_file(path: str | os.PathLike) -> object:
    """A ``torch.save`` file read with ``weights_only=True``: tensors, numbers, strings and plain
    containers only. Any other pickled object (one whose ``__reduce__`` would run code) is
    refused before it is built, as is a damaged file: one line each, naming the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 4": the refusal below says it all
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise RunDirError(
            f"{path}: refused: it holds pickled objects other than tensors, and loading them could run code "
            f"({_first_line(err)})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as err:
        raise RunDirError(f"{path}: not a readable PyTorch file ({type(err).__name__}: {_first_line(err)})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A resume checkpoint (``rundir.RESUME``), read as ``read_torch_file`` reads: Lightning's
    dict with at least its 0-based ``epoch``."""
    state = read_torch_file(path)
    if not isinstance(state, dict) or not isinstance(state.get("epoch"), int):
        raise RunDirError(f"{path}: not a steelseg resume checkpoint (no epoch in it)")
    return state


def _first_line(err: Exception) -> str:
    """One line of an error message (torch's and safetensors' run over several): what the
    weights-only unpickler refused ("Unsupported global: GLOBAL io.open ...") when it says,
    else the first line. torch's advice to retry with weights_only=False is left out on purpose."""
    text = str(err)
    refused = re.search(r"Unsupported [^.\n]+", text)
    lines = [line.strip() for line in text.splitlines() if line.strip()] or [type(err).__name__]
    return (refused[0] if refused else lines[0])[:300]
