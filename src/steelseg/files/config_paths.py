"""The paths inside a config: made absolute when a run records it (the run can then be read
from anywhere), cut to their last part when a file leaves the machine (an export's metadata)."""

from __future__ import annotations

from pathlib import Path

from steelseg.config import Config


def absolute_paths(config: Config) -> Config:
    """``config`` with data.root, data.folds, data.pseudo, model.init_from and a weights file
    made absolute."""
    data, model = config.data, config.model
    weights = model.encoder_weights
    if weights and (Path(weights).suffix in (".pth", ".pt", ".safetensors", ".bin") or Path(weights).exists()):
        weights = _absolute(weights)
    return config.model_copy(
        update={
            "data": data.model_copy(
                update={
                    "root": _absolute(data.root),
                    "folds": _absolute(data.folds),
                    "pseudo": data.pseudo and [_absolute(p) for p in data.pseudo],
                }
            ),
            "model": model.model_copy(update={"init_from": _absolute(model.init_from), "encoder_weights": weights}),
        }
    )


def without_machine_paths(config: Config) -> Config:
    """``config`` with each path (data.root, data.folds, data.pseudo, model.init_from, a weights
    file, distill.teacher and .unlabelled) cut to its last part: what a file that leaves this
    machine carries (an export's metadata) names no folder of the machine that trained it."""
    data, model = config.data, config.model
    name = lambda p: None if p is None else Path(p).name  # noqa: E731
    weights = model.encoder_weights
    if weights and Path(weights).is_absolute():
        weights = name(weights)
    update = {
        "data": data.model_copy(
            update={
                "root": name(data.root),
                "folds": name(data.folds),
                "pseudo": data.pseudo and list(map(name, data.pseudo)),
            }
        ),
        "model": model.model_copy(update={"init_from": name(model.init_from), "encoder_weights": weights}),
    }
    if config.distill is not None:
        distill = config.distill
        update["distill"] = distill.model_copy(
            update={"teacher": list(map(name, distill.teacher)), "unlabelled": name(distill.unlabelled)}
        )
    return config.model_copy(update=update)


def _absolute(path: str | None) -> str | None:
    return None if path is None else str(Path(path).expanduser().resolve())
