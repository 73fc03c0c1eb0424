"""``steelseg plan``: fingerprint a dataset and write the plan ``steelseg fit`` would run."""

from __future__ import annotations

import time
from pathlib import Path

from steelseg.files.datasets import open_dataset
from steelseg.hardware import resolve_device
from steelseg.pipeline.fingerprint import fingerprint_dataset, write_fingerprint
from steelseg.pipeline.plan import Plan, write_plan
from steelseg.pipeline.plan_table import format_plan


def plan_dataset(
    data: str,
    out: Path,
    budget_minutes: float,
    device: str = "auto",
    unlabelled: str | None = None,
    progress: bool = True,
    system: str | None = None,
    scale: str = "full",
    distill: str | None = None,
) -> str:
    """Write ``out`` (the plan) and ``<stem>-fingerprint.json`` beside it; return the plan's table.
    Data in another annotation format is converted first into ``<stem>-data/`` beside the plan."""
    from steelseg.files.importers import as_dataset_folder

    start = time.monotonic()
    device = resolve_device(device)
    root = as_dataset_folder(data, out.parent / f"{out.stem}-data")
    dataset = open_dataset(root)
    fingerprint = fingerprint_dataset(dataset, progress=progress)
    write_fingerprint(out.parent / f"{out.stem}-fingerprint.json", fingerprint)
    spent = time.monotonic() - start
    labelled = unlabelled is not None
    plan = derive_plan(fingerprint, dataset, budget_minutes, device, system, scale, labelled, spent, distill)
    write_plan(out, plan)
    return format_plan(plan)


def derive_plan(
    fingerprint,
    dataset,
    budget_minutes: float,
    device: str,
    system: str | None,
    scale: str,
    unlabelled: bool,
    spent_seconds: float,
    distill: str | None = None,
) -> Plan:
    """A seed system's plan (with its full-scale cost measured on ``dataset``), or the rules' plan;
    ``distill``: the student recipe of the last stage, if any."""
    if system:
        from steelseg.pipeline.costs import estimate_system
        from steelseg.pipeline.systems import system_plan

        plan = system_plan(system, fingerprint, budget_minutes, scale)
        if scale == "full":
            plan = estimate_system(plan, fingerprint, dataset.class_names, device, dataset=dataset)
        if distill:
            from steelseg.pipeline.planner import with_student
            from steelseg.pipeline.systems import student_settings

            plan = with_student(plan, distill, student_settings(distill, scale == "tiny"))
        return plan
    from steelseg.pipeline.planner import make_plan

    return make_plan(
        fingerprint,
        dataset.class_names,
        budget_minutes,
        device,
        unlabelled=unlabelled,
        spent_seconds=spent_seconds,
        dataset=dataset,
        distill=distill,
    )
