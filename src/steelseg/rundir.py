"""A run directory describes itself: everything ``predict`` needs lives in it.

    config.yaml         the fully resolved configuration, class names included
    model.safetensors   the best weights (no pickle: loading runs no code)
    postprocess.json    per-class pixel threshold and minimum area, tuned on validation
    metrics.csv         one row per epoch
    summary.json        the best epoch and its validation scores
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from steelseg.atomic import atomic_path, write_text
from steelseg.config import Config, ConfigError, load_config
from steelseg.postprocess import PostProcess

CONFIG = "config.yaml"
WEIGHTS = "model.safetensors"
POSTPROCESS = "postprocess.json"
METRICS = "metrics.csv"
SUMMARY = "summary.json"


class RunDirError(ValueError):
    """A run directory that lacks what it needs."""


def save_config(run_dir: str | os.PathLike, config: Config) -> None:
    if not config.data.class_names:
        raise ValueError("resolve the class names before saving a run's config")
    write_text(Path(run_dir) / CONFIG, config.to_yaml())


def save_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(Path(run_dir) / WEIGHTS) as tmp:
        save_file(state, str(tmp))


def save_postprocess(run_dir: str | os.PathLike, postprocess: PostProcess) -> None:
    write_text(Path(run_dir) / POSTPROCESS, postprocess.to_json() + "\n")


def save_summary(run_dir: str | os.PathLike, summary: dict) -> None:
    write_text(Path(run_dir) / SUMMARY, json.dumps(summary, indent=2) + "\n")


def load_run_config(run_dir: str | os.PathLike) -> Config:
    path = _need(run_dir, CONFIG)
    try:
        return load_config(path)
    except ConfigError as err:
        raise RunDirError(str(err)) from None


def load_weights(run_dir: str | os.PathLike, model: torch.nn.Module) -> None:
    """Load a run's weights into ``model``; ``run_dir`` may also be a .safetensors file."""
    path = Path(run_dir) if str(run_dir).endswith(".safetensors") else _need(run_dir, WEIGHTS)
    if not path.is_file():
        raise RunDirError(f"{path}: weights file not found")
    try:
        model.load_state_dict(load_file(str(path)))
    except RuntimeError as err:
        raise RunDirError(f"{path}: weights do not fit the model in {CONFIG}: {err}") from None


def load_postprocess(run_dir: str | os.PathLike, config: Config) -> PostProcess:
    """The tuned post-processing, or the config's defaults when the run was not tuned."""
    path = Path(run_dir) / POSTPROCESS
    num_classes = len(config.output_class_names)
    if not path.is_file():
        return PostProcess.uniform(num_classes, config.postprocess.pixel_threshold, config.postprocess.min_area)
    try:
        postprocess = PostProcess.from_json(path.read_text())
    except (ValueError, KeyError) as err:
        raise RunDirError(f"{path}: not a post-processing file ({err})") from None
    if postprocess.num_classes != num_classes:
        raise RunDirError(f"{path}: has {postprocess.num_classes} classes, the model {num_classes}")
    return postprocess


def _need(run_dir: str | os.PathLike, name: str) -> Path:
    path = Path(run_dir) / name
    if not path.is_file():
        raise RunDirError(f"{path} not found: is {run_dir} a steelseg run directory?")
    return path
