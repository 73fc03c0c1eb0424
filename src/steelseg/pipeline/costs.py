"""What a seed system costs at full scale on this machine: each member's recipe probed here
(``training.probe``, at its own crop and at most ``PROBE_BATCH`` images a step), its epochs
(every stage's) turned into minutes per fold, plus the out-of-fold prediction with the system's
TTA. GPU-hours are that time divided by ``GPU_SPEEDUP``: an assumption, not a measurement
(no GPU is measured here); the printed line says so.
"""

from __future__ import annotations

from functools import partial

from steelseg.config import Config, load_config
from steelseg.inference.ensemble import TTA
from steelseg.pipeline.fingerprint import Fingerprint
from steelseg.pipeline.plan import Plan
from steelseg.pipeline.rules import up32

PROBE_BATCH = 2
GPU_SPEEDUP = 40.0  # assumed: one V100-class GPU against this 2-core CPU, for these networks


def estimate_system(
    plan: Plan, fp: Fingerprint, class_names: list[str], device: str, measure=None, dataset=None
) -> Plan:
    """``plan`` with each member's ``minutes`` (one fold) measured (on ``dataset``'s real batches
    when given) and the stage estimates filled in."""
    measure = measure or partial(_default_measure, dataset=dataset)
    members, predict_s = [], 0.0
    n_train, n_val = fp.images * (plan.k - 1) // plan.k, max(1, fp.images // plan.k)
    for member in plan.members:
        config = load_config(member.recipe, member.overrides())
        config = config.model_copy(update={"data": config.data.model_copy(update={"class_names": list(class_names)})})
        crop, image = _shapes(config, fp)
        probe = measure(config, crop, image, min(PROBE_BATCH, config.data.batch_size), device)
        seconds = _fold_seconds(config, n_train, n_val, probe.train_seconds_per_image, probe.predict_seconds_per_image)
        members.append(member.model_copy(update={"minutes": round(seconds / 60, 2)}))
        predict_s += probe.predict_seconds_per_image
    trained = len(plan.trained_folds())
    train = sum(m.minutes for m in members) * trained
    oof = predict_s * (fp.images * trained // plan.k) * len(TTA[plan.tta]) / 60
    estimate = {"train": round(train, 1), "out-of-fold prediction": round(oof, 1)}
    total_h = (train + oof) / 60
    reasons = dict(plan.reasons)
    reasons["cost"] = (
        f"about {total_h:.1f} h on this machine ({device}) for {fp.images} images; "
        f"~{total_h / GPU_SPEEDUP:.2f} GPU-hours at an assumed {GPU_SPEEDUP:g}x (not measured)"
    )
    return plan.model_copy(update={"members": members, "estimate": estimate, "reasons": reasons})


def _shapes(config: Config, fp: Fingerprint) -> tuple[tuple[int, int], tuple[int, int]]:
    scale = config.model.input_scale
    image = (up32(fp.height["p50"] * scale), up32(fp.width["p50"] * scale))
    if config.data.crop_height is None:
        return image, image
    return (up32(config.data.crop_height * scale), up32(config.data.crop_width * scale)), image


def _fold_seconds(config: Config, n_train: int, n_val: int, train_s: float, predict_s: float) -> float:
    """Every stage's epochs: each a pass over the training side (or ``batches_per_epoch``) and a
    validation of the held-out fold."""
    total = 0.0
    for _, stage in config.stage_configs():
        per_epoch = n_train * stage.data.crops_per_image
        if stage.train.batches_per_epoch:
            per_epoch = min(per_epoch, stage.train.batches_per_epoch * stage.data.batch_size)
        val = n_val if stage.train.val_batches is None else min(n_val, stage.train.val_batches * stage.data.batch_size)
        total += stage.train.epochs * (per_epoch * train_s + val * predict_s)
    return total


def _default_measure(config, crop, image, batch, device, dataset=None):
    from steelseg.training.probe import probe

    return probe(config, crop, image, batch, device, steps=1, dataset=dataset)
