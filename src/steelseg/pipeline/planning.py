"""``steelseg plan``: fingerprint a dataset and write the plan ``steelseg fit`` would run."""

from __future__ import annotations

import time
from pathlib import Path

from steelseg.files.datasets import open_dataset
from steelseg.hardware import resolve_device
from steelseg.pipeline.fingerprint import fingerprint_dataset, write_fingerprint
from steelseg.pipeline.plan import write_plan
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
) -> str:
    """Write ``out`` (the plan) and ``<stem>-fingerprint.json`` beside it; return the plan's table.
    Data in another annotation format is converted first into ``<stem>-data/`` beside the plan."""
    from steelseg.files.importers import as_dataset_folder
    from steelseg.pipeline.planner import make_plan

    start = time.monotonic()
    device = resolve_device(device)
    root = as_dataset_folder(data, out.parent / f"{out.stem}-data")
    dataset = open_dataset(root)
    fingerprint = fingerprint_dataset(dataset, progress=progress)
    write_fingerprint(out.parent / f"{out.stem}-fingerprint.json", fingerprint)
    if system:
        from steelseg.pipeline.costs import estimate_system
        from steelseg.pipeline.systems import system_plan

        plan = system_plan(system, fingerprint, budget_minutes, scale)
        if scale == "full":
            plan = estimate_system(plan, fingerprint, dataset.class_names, device, dataset=dataset)
    else:
        plan = make_plan(
            fingerprint,
            dataset.class_names,
            budget_minutes,
            device,
            unlabelled=unlabelled is not None,
            spent_seconds=time.monotonic() - start,
            dataset=dataset,
        )
    write_plan(out, plan)
    return format_plan(plan)
