"""A run's training curves: ``curves.png`` beside its ``metrics.csv``.

Training redraws it after every validation (``training/writer.py`` calls ``refresh_curves``);
``steelseg report-curves RUN...`` draws it for runs made before, or again. Nothing here imports
matplotlib until a figure is drawn: the training writer imports this module.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np

from steelseg.files import rundir
from steelseg.reports import ReportError

PER_CLASS_PREFIX = "val_dice_tuned_"  # metrics.csv's per-class columns: val_dice_tuned_<class name>
NOT_PER_CLASS = {"val_dice_tuned"}


def read_metrics(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], list[str]]:
    """metrics.csv -> ({column: (E,) float64, empty cells NaN}, class names of the per-class
    columns). A missing file, a missing ``epoch`` column or a cell that is not a number is a
    ReportError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise ReportError(f"{path} not found: is {path.parent} a steelseg run directory?")
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header or "epoch" not in header:
            raise ReportError(f"{path}:1: expected a header with an epoch column, got {','.join(header or [])!r}")
        rows = [(reader.line_num, row) for row in reader if any(cell.strip() for cell in row)]
    values = np.full((len(rows), len(header)), np.nan)
    for r, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise ReportError(f"{path}:{line}: expected {len(header)} columns, got {len(row)}")
        for k, cell in enumerate(row):
            values[r, k] = _number(cell, path, line, header[k])
    metrics = {name: values[:, k] for k, name in enumerate(header)}
    names = [h[len(PER_CLASS_PREFIX) :] for h in header if h.startswith(PER_CLASS_PREFIX) and h not in NOT_PER_CLASS]
    return metrics, names


def write_curves(run_dir: str | os.PathLike) -> Path:
    """Draw ``RUN_DIR/curves.png`` from ``RUN_DIR/metrics.csv``; returns the PNG's path."""
    from steelseg.reports import figures

    run_dir = Path(run_dir)
    metrics, class_names = read_metrics(run_dir / rundir.METRICS)
    if not len(metrics["epoch"]):
        raise ReportError(f"{run_dir / rundir.METRICS}: no epoch has finished yet")
    path = run_dir / rundir.CURVES
    figures.training_curves(metrics, class_names, path, title=f"Training curves: {run_dir.name}")
    return path


def refresh_curves(run_dir: str | os.PathLike) -> None:
    """``write_curves`` for the training writer: a figure that cannot be drawn (say, matplotlib
    missing) is a warning, never the end of a training run."""
    try:
        write_curves(run_dir)
    except Exception as err:  # noqa: BLE001 - a picture is worth less than the run
        warnings.warn(f"{Path(run_dir) / rundir.CURVES} not drawn: {err}", stacklevel=2)


def runs_with_metrics(folder: str | os.PathLike) -> list[Path]:
    """The run directories at or beneath ``folder`` that have a metrics.csv (a run, its stages,
    the folds of ``train --fold all``, the classes of ``--per-class``), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ReportError(f"{folder}: run directory not found")
    runs = sorted({p.parent for p in folder.rglob(rundir.METRICS)})
    if not runs:
        raise ReportError(f"{folder}: no {rundir.METRICS} in it or beneath it: not a steelseg run directory")
    return runs


def _number(cell: str, path: Path, line: int, column: str) -> float:
    cell = cell.strip()
    if not cell:
        return np.nan
    try:
        return float(cell)
    except ValueError:
        raise ReportError(f"{path}:{line}: column {column}: {cell!r} is not a number") from None
