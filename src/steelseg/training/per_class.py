"""``steelseg train --per-class``: one binary model per defect class (9th/10th place)."""

from __future__ import annotations

import os

from steelseg.config import Config
from steelseg.files import rundir
from steelseg.files.datasets import open_configured
from steelseg.training.fit import train


def train_per_class(config: Config, out: str | os.PathLike, progress: bool = True) -> str:
    """Train ``OUT/class-<id>-<name>`` on each class alone (or on each of ``data.classes``);
    returns a line per class with its best validation Dice."""
    data = config.data
    names = open_configured(data).class_names  # resolved once: each run below reuses them
    lines = []
    for class_id in data.classes or range(1, len(names) + 1):
        single = config.model_copy(
            update={"data": data.model_copy(update={"classes": [class_id], "class_names": names})}
        )
        run = rundir.class_dir(out, class_id, names[class_id - 1])
        summary = train(single, run, progress)
        lines.append(f"class {class_id} {names[class_id - 1]}: validation Dice {summary.val_dice_tuned:.4f} ({run})")
    return "\n".join(lines)
