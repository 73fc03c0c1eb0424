"""What ``steelseg train`` starts, and the lines that report it: one run, every fold (``--fold all``),
one run per class (``--per-class``), or a resumed run or folder of folds."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from steelseg.files.rundir import RunSummary


def train_run(
    config: str | os.PathLike | None,
    overrides: list[str],
    out: str | os.PathLike,
    *,
    fold: str | None = None,
    per_class: bool = False,
    progress: bool = True,
) -> str:
    """Train ``config`` (a YAML file or bundled recipe) with ``overrides`` into ``out``; ``fold``:
    the validation fold, a number or "all" (every fold in turn, then the CV table); ``per_class``:
    one binary model per class. Returns the report to print."""
    from steelseg.config import load_config

    overrides = list(overrides)
    if fold == "all":
        from steelseg.training.cv import train_all_folds

        overrides.append("data.fold=0")  # each fold in turn
        return _with_skipped(train_all_folds(load_config(config, overrides), out, progress=progress), out)
    if fold is not None:
        overrides.append(f"data.fold={fold}")
    if per_class:
        from steelseg.training.per_class import train_per_class

        return _with_skipped(train_per_class(load_config(config, overrides), out, progress=progress), out)
    from steelseg.training.fit import train

    summary = train(load_config(config, overrides), out, progress=progress)
    return _with_skipped(summary_report(summary, out), out)


def distill_run(
    teachers: list[str],
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    config: str | os.PathLike | None = "default",
    overrides: list[str] = (),
    unlabelled: str | os.PathLike | None = None,
    progress: bool = True,
    **teacher_options,
) -> str:
    """Distil ``teachers`` into a student (``config`` with ``overrides``) trained on ``data`` (and
    the ``unlabelled`` images) into ``out`` (``training.distill``). Returns the report to print."""
    from steelseg.training.distill import distill_config
    from steelseg.training.fit import train

    student = distill_config(config, list(overrides), teachers, data, unlabelled, **teacher_options)
    summary = train(student, out, progress=progress)
    return _with_skipped(summary_report(summary, out), out)


def resume_run(run_dir: str | os.PathLike, progress: bool = True, say: Callable[[str], None] = print) -> str:
    """Continue a stopped or killed run, or the folder of ``--fold all``, from its last finished
    epoch; ``say`` hears where it resumes before training starts. Returns the report to print."""
    from steelseg.training.cv import cv_resume_point, is_cv_folder, resume_all_folds
    from steelseg.training.fit import resume, resume_point

    if is_cv_folder(run_dir):  # the output folder of --fold all
        say(cv_resume_point(run_dir))
        return _with_skipped(resume_all_folds(run_dir, progress=progress), run_dir)
    say(resume_point(run_dir))
    return _with_skipped(summary_report(resume(run_dir, progress=progress), run_dir), run_dir)


def summary_report(summary: RunSummary, run_dir: str | os.PathLike) -> str:
    """The best epoch's scores and, when the run scores classes, its screening report."""
    from steelseg.core.screening import format_report
    from steelseg.files.rundir import GATE

    if summary.task == "classify":  # no masks to score
        what = "presence accuracy (the mean Dice if every mask let through were perfect)"
    else:
        what = "mean Dice"
    lines = [
        f"best epoch {summary.epoch}: validation {what} {summary.val_dice_tuned:.4f} "
        f"(untuned {summary.val_dice:.4f}); run saved in {run_dir}"
    ]
    if summary.screening is not None:
        lines.append(
            f"screening on the validation images (label thresholds tuned there, saved in {Path(run_dir) / GATE}):"
        )
        lines.append(format_report(summary.screening, summary.class_names))
    return "\n".join(lines)


def skipped_report(out: str | os.PathLike) -> str | None:
    """With --skip-bad: how many bad rows and images the run left out, and where they are listed."""
    from steelseg.training.data import count_skipped

    count, files = count_skipped(out)
    if not files:
        return None
    where = files[0] if len(files) == 1 else f"{len(files)} skipped.txt files under {out}"
    plural = "s" if count != 1 else ""
    return f"--skip-bad: left out {count} bad row{plural} or image{plural} (listed in {where})"


def _with_skipped(report: str, out: str | os.PathLike) -> str:
    skipped = skipped_report(out)
    return report if skipped is None else f"{report}\n{skipped}"
