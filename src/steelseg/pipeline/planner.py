"""``make_plan``: a dataset's fingerprint, a budget and a device -> a ``Plan``, by the rules of
``pipeline.rules`` and a measured probe of each candidate (``training.probe``).

The probe is a parameter (``measure``) so that the rules can be tested with known numbers; by
default it trains a few steps of each candidate on this machine.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import partial

from steelseg.config import Config, DataConfig, load_config
from steelseg.inference.ensemble import TTA
from steelseg.pipeline import rules
from steelseg.pipeline.fingerprint import Fingerprint
from steelseg.pipeline.plan import DistillPlan, MemberPlan, Plan, PseudoPlan, TunePlan

# Training time of a candidate relative to a segmenter's share of the budget: a classifier
# has no decoder to train and its screen matters less than the masks.
SHARES = {"segment": 1.0, "two_head": 1.0, "classify": 0.5}
NAMES = {"segment": "unet", "two_head": "two-head", "classify": "screen"}
PROBE_BATCH = 2
PSEUDO_SHARE = 0.4  # of the training time, for retraining on pseudo-labels
MAX_MINUTES_SLACK = 1.25  # a fold's hard stop (train.max_minutes) against its planned time

Measure = Callable[[Config, tuple[int, int], tuple[int, int], int, str], "object"]


def make_plan(
    fp: Fingerprint,
    class_names: list[str],
    budget_minutes: float,
    device: str,
    measure: Measure | None = None,
    unlabelled: bool = False,
    spent_seconds: float = 0.0,
    free_bytes: int | None = None,
    seed: int = 0,
    dataset=None,
    distill: str | None = None,
) -> Plan:
    """The plan (module docstring); ``spent_seconds``: of the budget, already used (the fingerprint);
    ``dataset``: the probe trains on its real batches (reading and augmenting images included);
    ``distill``: the student recipe of a last stage that distills the system (``rules.DISTILL_SHARE`` of
    the budget is kept for it)."""
    measure = measure or partial(_default_measure, dataset=dataset)
    reasons: dict[str, str] = {}
    geo, why = rules.geometry(fp)
    reasons.update(why)
    kinds, reasons["families"] = rules.families(fp)
    sampler, pos_weight, reasons["sampler, loss weights"] = rules.sampler_and_weights(fp)
    settings_at = partial(_base_settings, sampler=sampler, pos_weight=pos_weight, seed=seed)
    probe_at = partial(_probe_all, class_names=class_names, measure=measure, device=device, free_bytes=free_bytes)
    left_s = (budget_minutes * 60 - spent_seconds) * (1 - rules.DISTILL_SHARE if distill else 1.0)
    geo, probes, probe_s = _probed(fp, geo, kinds, settings_at, probe_at, left_s, unlabelled, reasons)
    spent_seconds += probe_s  # the probes' minutes are the budget's too (2-3 min on a slow CPU)
    base = settings_at(geo)
    budget_s = budget_minutes * 60 - spent_seconds
    distill_s = budget_s * rules.DISTILL_SHARE if distill else 0.0
    kinds, k, trained, tta, train_s = _fit_candidates(fp, kinds, probes, budget_s - distill_s, unlabelled, reasons)
    members = _members(fp, kinds, probes, base, train_s, k, trained, tta, reasons)
    estimate = _estimate(fp, kinds, probes, k, trained, tta, train_s, spent_seconds)
    student = None
    if distill:
        student, reasons["distill"] = _student(fp, distill, kinds, probes, base, distill_s, trained, tta)
        estimate["distill"] = round(distill_s / 60, 2)
    area_grid, component_grid, reasons["post-processing search"] = rules.search_space(fp)
    pseudo = PseudoPlan()
    if unlabelled:
        pseudo = PseudoPlan(
            rounds=1, minutes=round(max(m.minutes for m in members) * PSEUDO_SHARE / (1 - PSEUDO_SHARE), 2)
        )
        reasons["pseudo-labels"] = f"unlabelled images given: 1 round, {PSEUDO_SHARE:.0%} of the training time"
    reasons["tune"] = "competition Dice; no class switched off; each class keeps recall >= 0.5 on out-of-fold images"
    return Plan(
        budget_minutes=budget_minutes,
        device=device,
        k=k,
        folds_trained=trained,
        seed=seed,
        tta=tta,
        members=members,
        tune=TunePlan(recall_floor=0.5, area_grid=area_grid, component_grid=component_grid),
        pseudo=pseudo,
        distill=student,
        reasons=reasons,
        estimate=estimate,
    )


def with_student(plan: Plan, recipe: str, settings: dict[str, object] | None = None) -> Plan:
    """``plan`` (a plan file's, a seed system's) with ``recipe`` as its student: the plan's own
    distill settings are kept; a plan without them gets ``settings`` and the rules' share of its
    budget, which its training stages then leave free."""
    if plan.distill is not None:
        student = plan.distill.model_copy(update={"student": recipe})
    else:
        minutes = round(plan.budget_minutes * rules.DISTILL_SHARE, 2)
        student = DistillPlan(student=recipe, settings=dict(settings or {}), minutes=minutes)
    estimate = dict(plan.estimate)
    estimate.setdefault("distill", round(student.minutes + student.teacher_minutes, 2))
    return plan.model_copy(update={"distill": student, "estimate": estimate})


def _student(fp, recipe, kinds, probes, base, seconds, trained, tta) -> tuple[DistillPlan, str]:
    """The distilled student: what is left of its share once the teacher (every candidate's fold
    models, with the TTA views, on every image: an upper bound of the shipped system) has
    predicted, scheduled as a segmenter of the probe's batch on all the images."""
    views = len(TTA[tta])
    teacher_s = fp.images * views * trained * sum(probes[kind].predict_seconds_per_image for kind in kinds)
    student_s = seconds - teacher_s - rules.EXPORT_SECONDS
    if student_s <= 0:
        raise rules.BudgetError(
            f"the budget leaves no time to distill: the system's predictions alone take about "
            f"{teacher_s / 60:.1f} of the {seconds / 60:.1f} min kept for it; give a larger --budget"
        )
    probe = probes["segment"]
    val_images = max(1, round(fp.images * DataConfig().val_fraction))  # the student's own validation split
    plan, why = rules.schedule(
        student_s / 60,
        fp.images - val_images,
        val_images,
        probe.batch_size,
        probe.train_seconds_per_image,
        probe.predict_seconds_per_image,
    )
    settings = dict(base, **{"data.batch_size": probe.batch_size})
    settings.update(_schedule_settings(plan))
    student = DistillPlan(
        student=recipe, settings=settings, minutes=round(plan.minutes, 2), teacher_minutes=round(teacher_s / 60, 2)
    )
    models = f"{trained} fold model{'s' if trained > 1 else ''}"
    reason = (
        f"{rules.DISTILL_SHARE:.0%} of the budget: the system predicts every image ({views} views x {models}, "
        f"about {teacher_s / 60:.1f} min), the student trains {student_s / 60:.1f} min: {why}"
    )
    return student, reason


def _probed(fp, geo, kinds, settings_at, probe_at, budget_s, unlabelled, reasons):
    """The geometry for the budget (``_geometry_for_budget``), every candidate's probe there, and
    the seconds the probing took."""
    started = time.monotonic()
    geo, probes = _geometry_for_budget(fp, geo, settings_at, probe_at, budget_s, unlabelled, reasons)
    probes.update(probe_at([kind for kind in kinds if kind not in probes], settings_at(geo), geo=geo, reasons=reasons))
    return geo, probes, time.monotonic() - started


def _geometry_for_budget(fp, geo, settings_at, probe_at, budget_s, unlabelled, reasons):
    """``geo`` and the segmenter's probe there; the next coarser geometry (``rules.coarser``)
    while the segmenter alone would get fewer than ``rules.MIN_FOLD_STEPS`` steps in one fold."""
    while True:
        probes = probe_at(["segment"], settings_at(geo), geo=geo, reasons=reasons)
        steps = _steps(fp, ["segment"], probes, budget_s, unlabelled, rules.fold_count(fp), 1)
        step = rules.coarser(geo, fp) if steps < rules.MIN_FOLD_STEPS else None
        if step is None:
            return geo, probes
        scale, (geo, why) = geo.scale, step
        reasons.update(why)
        reasons["input scale"] += (
            f"; at {scale:g} the unet would get {steps:.0f} optimiser steps in a fold ({rules.MIN_FOLD_STEPS} "
            f"wanted), at half the resolution a step costs about a quarter"
        )


def _probe_all(kinds, base, class_names, geo, measure, device, free_bytes, reasons) -> dict:
    """Each candidate measured at ``PROBE_BATCH`` for its memory, then at the batch chosen from it."""
    probes = {}
    for kind in kinds:
        config = _probe_config(base, kind, class_names)
        first = measure(config, geo.net_crop, geo.net_image, PROBE_BATCH, device)
        batch, reasons[f"batch ({NAMES[kind]})"] = rules.batch_size(
            first.bytes_per_sample, _free(free_bytes, device), device
        )
        probes[kind] = measure(config, geo.net_crop, geo.net_image, batch, device) if batch != PROBE_BATCH else first
    return probes


def _members(fp, kinds, probes, base, train_s, k, trained, tta, reasons) -> list[MemberPlan]:
    """One member per candidate kind, its share of the training time turned into epochs."""
    members = []
    total_share = sum(SHARES[kind] for kind in kinds)
    for kind in kinds:
        minutes = train_s * SHARES[kind] / (trained * total_share) / 60
        probe = probes[kind]
        plan, why = rules.schedule(
            minutes,
            fp.images * (k - 1) // k,
            max(1, fp.images // k),
            probe.batch_size,
            probe.train_seconds_per_image,
            probe.predict_seconds_per_image,
        )
        reasons[f"epochs ({NAMES[kind]})"] = f"{minutes:.1f} min per fold: {why}"
        members.append(_member(kind, base, probe.batch_size, plan, tta))
    return members


def _fit_candidates(fp, kinds, probes, budget_s, unlabelled, reasons):
    """Candidates, k, folds trained, TTA and training seconds. Extra candidates are dropped (two
    heads first, then the screen) while one fold model of each would get fewer than
    ``rules.MIN_FOLD_STEPS``; k and the folds trained follow (``rules.folds``), planned with flip
    TTA; then the TTA views (``rules.tta_views``), and training gets all the other stages leave."""
    kinds = list(kinds)
    while True:
        steps_at = partial(_steps, fp, kinds, probes, budget_s, unlabelled)
        if steps_at(rules.fold_count(fp), 1) >= rules.MIN_FOLD_STEPS or len(kinds) == 1:
            break
        dropped = "two_head" if "two_head" in kinds else kinds[-1]
        kinds.remove(dropped)
        reasons["families"] += f"; {NAMES[dropped]} dropped: too little time for it to learn"
    k, trained, reasons["folds"] = rules.folds(fp, steps_at)
    tta, reasons["TTA"] = rules.tta_views(
        sum(probes[kind].predict_seconds_per_image for kind in kinds), _oof_images(fp, k, trained), budget_s
    )
    train_s = _train_seconds(fp, kinds, probes, budget_s, unlabelled, k, trained, tta)
    if train_s <= 0:
        overhead = budget_s - train_s / (1 - PSEUDO_SHARE if unlabelled else 1)
        raise rules.BudgetError(
            f"the budget leaves no time to train: predicting and tuning alone take about "
            f"{overhead / 60:.1f} min; give a larger --budget"
        )
    return kinds, k, trained, tta, train_s


def _train_seconds(fp, kinds, probes, budget_s, unlabelled, k, trained, tta) -> float:
    """What the other stages and the pseudo-label rounds leave of the budget for training."""
    overhead = sum(_other_stages(fp, kinds, probes, k, trained, tta).values()) + rules.FIXED_SECONDS
    return (budget_s - overhead) * (1 - PSEUDO_SHARE if unlabelled else 1)


def _steps(fp, kinds, probes, budget_s, unlabelled, k, trained) -> float:
    """Optimiser steps of the slowest mask-predicting candidate's fold model when ``trained`` of
    ``k`` folds are trained (with flip TTA planned), its validations' time taken off. A screen is
    planned shorter by its share and does not count."""
    train_s = _train_seconds(fp, kinds, probes, budget_s, unlabelled, k, trained, "both")
    total_share = sum(SHARES[kind] for kind in kinds)
    val_images = max(1, fp.images // k)
    steps = []
    for kind in kinds:
        if kind == "classify":
            continue
        probe = probes[kind]
        seconds = train_s * SHARES[kind] / (trained * total_share)
        images, times = rules.validation(seconds, val_images, probe.predict_seconds_per_image)
        seconds -= times * images * probe.predict_seconds_per_image
        steps.append(max(0.0, seconds) / (probe.train_seconds_per_image * probe.batch_size))
    return min(steps)


def _oof_images(fp, k: int, trained: int) -> int:
    """Images of the trained folds: those the out-of-fold files cover."""
    return max(1, fp.images * trained // k)


def _other_stages(fp, kinds, probes, k: int, trained: int, tta: str) -> dict[str, float]:
    """Seconds of the stages after training: out-of-fold prediction of the trained folds' images
    with the TTA views, select and tune (every candidate set a greedy search may score), export of
    every fold model."""
    images = _oof_images(fp, k, trained)
    predict = sum(probes[kind].predict_seconds_per_image for kind in kinds) * images * len(TTA[tta])
    return {
        "out-of-fold prediction": predict,
        "select and tune": rules.TUNE_SECONDS_PER_IMAGE * images * len(kinds) * 2 * len(kinds),
        "export": rules.EXPORT_SECONDS * trained * len(kinds),
    }


def _estimate(fp, kinds, probes, k, trained, tta, train_s, spent_s) -> dict[str, float]:
    later = {
        stage: round(seconds / 60, 2) for stage, seconds in _other_stages(fp, kinds, probes, k, trained, tta).items()
    }
    return {"fingerprint and probe": round(spent_s / 60, 2), "train": round(train_s / 60, 2), **later}


def _base_settings(geo: rules.Geometry, sampler: str, pos_weight: list[float], seed: int) -> dict[str, object]:
    crop_h, crop_w = geo.crop if geo.crop else (None, None)
    return {
        "model.input_scale": geo.scale,
        "model.in_channels": 1,
        "data.crop_height": crop_h,
        "data.crop_width": crop_w,
        "data.sampler": sampler,
        "train.scheduler": {"name": "cosine"},  # a fixed budget ends on a decayed learning rate
        "train.loss": [
            {"name": "bce", "weight": 0.5, "params": {"pos_weight": pos_weight}},
            {"name": "dice", "weight": 0.5},
        ],
        "train.seed": seed,
    }


def _member(kind: str, base: dict, batch: int, plan: rules.Schedule, tta: str) -> MemberPlan:
    settings = dict(base, **{"model.task": kind, "data.batch_size": batch})
    settings.update(_schedule_settings(plan), **{"train.oof_tta": tta})
    return MemberPlan(name=NAMES[kind], recipe="default", settings=settings, minutes=round(plan.minutes, 2))


def _schedule_settings(plan: rules.Schedule) -> dict[str, object]:
    return {
        "train.epochs": plan.epochs,
        "train.batches_per_epoch": plan.batches_per_epoch,
        "train.val_batches": plan.val_batches,
        "train.max_minutes": round(plan.minutes * MAX_MINUTES_SLACK, 2),
    }


def _probe_config(base: dict, kind: str, class_names: list[str]) -> Config:
    member = MemberPlan(name="probe", settings=dict(base, **{"model.task": kind}), minutes=1)
    config = load_config(member.recipe, member.overrides())
    return config.model_copy(update={"data": config.data.model_copy(update={"class_names": list(class_names)})})


def _free(free_bytes: int | None, device: str) -> int:
    """Free memory of the device: CUDA's own count, else the kernel's MemAvailable."""
    if free_bytes is not None:
        return free_bytes
    if device.startswith("cuda"):
        import torch

        return int(torch.cuda.mem_get_info(torch.device(device))[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def _default_measure(config, crop, image, batch, device, dataset=None):
    from steelseg.training.probe import probe

    return probe(config, crop, image, batch, device, dataset=dataset)
