"""``steelseg report-curves RUN...``: the training curves of existing runs (``reports.curves``)."""

from __future__ import annotations

import argparse

HELP = "draw the training curves (curves.png) of existing runs from their metrics.csv"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="a run directory, or a folder of runs (folds, per-class runs, stages): every metrics.csv beneath "
        "gets a curves.png beside it",
    )


def run(args: argparse.Namespace) -> None:
    from steelseg.reports.curves import runs_with_metrics, write_curves

    runs = [run for folder in args.runs for run in runs_with_metrics(folder)]  # every folder checked before drawing
    for run_dir in runs:
        print(f"wrote {write_curves(run_dir)}")
