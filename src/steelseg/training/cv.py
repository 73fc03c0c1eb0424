"""``steelseg train --fold all``: one run per fold and the cross-validation table."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from steelseg.config import Config, ConfigError, load_config
from steelseg.errors import OutputExistsError
from steelseg.files import rundir
from steelseg.files.atomic import leftovers, write_text
from steelseg.files.folds import read_folds
from steelseg.files.rundir import CV_TABLE, RunSummary
from steelseg.training.fit import continue_run, resume_point


def train_all_folds(config: Config, out: str | os.PathLike, progress: bool = True) -> str:
    """Train ``OUT/fold-<i>`` for every fold of ``config.data.folds``; write and return the
    table of each fold's best validation scores with their mean and standard deviation.
    ``OUT/cv.yaml`` keeps the config, so that ``resume_all_folds`` can finish a killed run."""
    if not config.data.folds:
        raise ConfigError("--fold all needs data.folds: make one with `steelseg folds`")
    out = Path(out)
    if (out / CV_TABLE).exists() or any(rundir.has_finished_epoch(run) for run in out.glob(rundir.FOLD_GLOB)):
        raise OutputExistsError(f"{out} already holds a --fold all run; choose another output folder (or --resume it)")
    _check_not_foreign(out / rundir.CV_CONFIG)
    write_text(out / rundir.CV_CONFIG, rundir.absolute_paths(config).to_yaml())
    return _all_folds(config, out, progress)


def resume_all_folds(out: str | os.PathLike, progress: bool = True) -> str:
    """Finish ``train --fold all`` in ``out`` after a crash: finished folds are kept, an
    interrupted one resumes from its checkpoint, the others are trained; then the table."""
    return _all_folds(_cv_config(out), Path(out), progress)


def is_cv_folder(path: str | os.PathLike) -> bool:
    """True for the output folder of ``train --fold all`` (as opposed to one run's folder)."""
    return (Path(path) / rundir.CV_CONFIG).is_file()


def cv_resume_point(out: str | os.PathLike) -> str:
    """Where ``resume_all_folds`` continues, in words; fails clearly when everything is done."""
    out, config = Path(out), _cv_config(out)
    for fold in _folds(config):
        run = rundir.fold_dir(out, fold)
        if not (run / rundir.FINISHED).exists():
            where = (
                resume_point(run) if rundir.has_finished_epoch(run) else f"starting at epoch 1 of {config.train.epochs}"
            )
            return f"fold {fold}: {where}"
    if not (out / CV_TABLE).exists():
        return "every fold has finished; writing the CV table"
    raise rundir.RunDirError(f"{out}: every fold has finished; nothing to resume")


def _all_folds(config: Config, out: Path, progress: bool) -> str:
    for path in leftovers(out):  # of a table or cv.yaml whose write a kill cut short
        path.unlink(missing_ok=True)
    folds = _folds(config)
    summaries = [train_fold(config, out, fold, progress) for fold in folds]
    return write_cv_table(out, summaries, folds)


def train_fold(config: Config, out: str | os.PathLike, fold: int, progress: bool = True) -> RunSummary:
    """Bring ``OUT/fold-<fold>`` to a finished run of ``config`` validated on ``fold`` (a fresh
    start, a resume, or its summary when it has finished): one job of ``--fold all``."""
    data = config.data.model_copy(update={"fold": fold})
    return continue_run(config.model_copy(update={"data": data}), rundir.fold_dir(out, fold), progress)


def start_cv_folder(config: Config, out: str | os.PathLike) -> None:
    """Write ``OUT/cv.yaml`` (once) so that ``out`` is a folder of folds that ``train --resume``,
    ``predict`` and ``tune`` recognise."""
    path = Path(out) / rundir.CV_CONFIG
    if not path.is_file():
        write_text(path, rundir.absolute_paths(config).to_yaml())


def write_cv_table(out: str | os.PathLike, summaries: list[RunSummary], folds: list[int]) -> str:
    """Write ``OUT/cv.csv`` from the folds' summaries; return it formatted for the terminal."""
    header, rows = cv_rows(summaries, folds)
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows([header, *rows])
    write_text(Path(out) / CV_TABLE, buffer.getvalue())
    return format_cv(header, rows)


def _folds(config: Config) -> list[int]:
    return sorted(set(read_folds(config.data.folds).values()))


def _cv_config(out: str | os.PathLike) -> Config:
    path = Path(out) / rundir.CV_CONFIG
    if not path.is_file():
        raise rundir.RunDirError(f"{path} not found: is {out} the output folder of `steelseg train --fold all`?")
    try:
        return load_config(path)
    except ConfigError as err:
        raise rundir.RunDirError(str(err)) from None


def _check_not_foreign(path: Path) -> None:
    """A cv.yaml that steelseg did not write (its data.root is absolute) is the user's: never replaced."""
    if path.exists():
        try:
            ours = Path(load_config(path).data.root or "").is_absolute()
        except ConfigError:
            ours = False
        if not ours:
            raise OutputExistsError(
                f"{path} exists and is not a steelseg --fold all run's; choose another output folder"
            )


def cv_rows(summaries: list[RunSummary], folds: list[int]) -> tuple[list[str], list[list]]:
    """Per fold: best epoch, mean Dice (tuned; a classifier's presence accuracy), mean IoU,
    mean class-score AUC, per-class Dice; then mean and std. A value a run has not (a
    classifier's IoU, the AUC of a fold without both kinds of image) is nan."""
    names = summaries[0].class_names
    header = ["fold", "epoch", "dice", "iou", "auc", *[f"dice_{n}" for n in names]]
    values = np.array(
        [[s.val_dice_tuned, _or_nan(s.val_iou), _mean_auc(s), *s.val_class_dice_tuned] for s in summaries]
    )
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
