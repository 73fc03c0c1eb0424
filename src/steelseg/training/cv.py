"""``steelseg train --fold all``: one run per fold and the cross-validation table."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from steelseg.atomic import write_text
from steelseg.config import Config, ConfigError
from steelseg.folds import read_folds
from steelseg.rundir import CV_TABLE, RunSummary
from steelseg.training.fit import train

def train_all_folds(config: Config, out: str | os.PathLike, progress: bool = True) -> str:
    """Train ``OUT/fold-<i>`` for every fold of ``config.data.folds``; write and return the
    table of each fold's best validation scores with their mean and standard deviation."""
    if not config.data.folds:
        raise ConfigError("--fold all needs data.folds: make one with `steelseg folds`")
    out = Path(out)
    folds = sorted(set(read_folds(config.data.folds).values()))
    summaries = []
    for fold in folds:
        data = config.data.model_copy(update={"fold": fold})
        summaries.append(train(config.model_copy(update={"data": data}), out / f"fold-{fold}", progress))
    header, rows = cv_rows(summaries, folds)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    write_text(out / CV_TABLE, buffer.getvalue())
    return format_cv(header, rows)


def cv_rows(summaries: list[RunSummary], folds: list[int]) -> tuple[list[str], list[list]]:
    """Per fold: best epoch, mean Dice (tuned; a classifier's presence accuracy), mean IoU,
    mean class-score AUC, per-class Dice; then mean and std. A value a run has not (a
    classifier's IoU, the AUC of a fold without both kinds of image) is nan."""
    names = summaries[0].class_names
    header = ["fold", "epoch", "dice", "iou", "auc", *[f"dice_{n}" for n in names]]
    values = np.array([[s.val_dice_tuned, _or_nan(s.val_iou), _mean_auc(s), *s.val_class_dice_tuned] for s in summaries])
    rows = [[fold, s.epoch, *v.round(4).tolist()] for fold, s, v in zip(folds, summaries, values)]
    rows.append(["mean", "", *values.mean(axis=0).round(4).tolist()])
    rows.append(["std", "", *values.std(axis=0).round(4).tolist()])
    return header, rows


def _mean_auc(summary: RunSummary) -> float:
    aucs = [a for a in (summary.screening.auc if summary.screening else []) if a is not None]
    return float(np.mean(aucs)) if aucs else float("nan")


def _or_nan(value: float | None) -> float:
    return float("nan") if value is None else value


def format_cv(header: list[str], rows: list[list]) -> str:
    width = max(8, *(len(h) + 2 for h in header))
    lines = ["".join(f"{h:>{width}}" for h in header)]
    lines += ["".join(f"{str(v):>{width}}" for v in row) for row in rows]
    return "\n".join(lines)
