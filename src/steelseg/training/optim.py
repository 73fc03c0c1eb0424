"""Optimisers and learning-rate schedules of the top solutions, as plain-dict registries.

The schedules are pure functions of the step (a multiplier of the base learning rate), so a
test can check their values and a resumed run continues them exactly.
"""

from __future__ import annotations

import math
from functools import partial

import torch

from steelseg.config import SchedulerConfig, TrainConfig

OPTIMIZERS = {
    "adam": lambda params, c: torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay),
    "adamw": lambda params, c: torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay),
    "radam": lambda params, c: torch.optim.RAdam(params, lr=c.lr, weight_decay=c.weight_decay),
    "sgd": lambda params, c: torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay),
}


def cosine_factor(step: int, total: int, warmup_steps: int = 0, min_factor: float = 0.0) -> float:
    """Linear warm-up, then half a cosine from 1 down to ``min_factor`` at ``total`` steps."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total - warmup_steps))
    return min_factor + (1 - min_factor) * 0.5 * (1 + math.cos(math.pi * progress))


def flat_cosine_factor(step: int, total: int, flat_fraction: float = 0.7, min_factor: float = 0.0) -> float:
    """Constant for ``flat_fraction`` of the steps, then cosine down to ``min_factor``."""
    flat = int(total * flat_fraction)
    if step < flat:
        return 1.0
    return cosine_factor(step - flat, total - flat, 0, min_factor)


def noam_factor(step: int, total: int, warmup_steps: int = 100) -> float:
    """Warm-up then inverse square root (the Transformer's "Noam" schedule, 7th place): rises
    linearly to 1 at ``warmup_steps``, then decays as sqrt(warmup_steps / step)."""
    step = step + 1
    return min(step / warmup_steps, math.sqrt(warmup_steps / step))


STEP_SCHEDULES = {"cosine": cosine_factor, "flat_cosine": flat_cosine_factor, "noam": noam_factor}


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[config.optimizer](params, config)


def build_scheduler(optimizer: torch.optim.Optimizer, config: SchedulerConfig, total_steps: int) -> dict | None:
    """A Lightning ``lr_scheduler`` entry, or None for a constant rate.

    ``plateau`` (3rd place: factor 0.5, patience 3, cooldown 3) halves the rate when the
    validation mean Dice stops rising; the others move every optimiser step.
    """
    if config.name == "constant":
        return None
    if config.name == "plateau":
        params = {"factor": 0.5, "patience": 3, "cooldown": 3, **config.params}
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", **params)
        return {"scheduler": scheduler, "monitor": "val_dice_tuned", "interval": "epoch"}
    schedule = partial(STEP_SCHEDULES[config.name], total=max(1, total_steps), **config.params)
    return {"scheduler": torch.optim.lr_scheduler.LambdaLR(optimizer, schedule), "interval": "step"}
