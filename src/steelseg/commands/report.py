"""``steelseg report PRED TRUTH IMAGES --out DIR``: an HTML page on a submission against the truth
(``reports.report``)."""

from __future__ import annotations

import argparse
import sys

from steelseg.commands import options

HELP = "an HTML page on a submission against the truth: Dice, presence, curves, areas, worst images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steelseg.reports.report import DEFAULT_WORST, FIGURES_DIR, PAGE  # no matplotlib

    parser.add_argument("pred", help="submission CSV (either layout)")
    parser.add_argument("truth", help="true masks CSV (either layout; an image without rows has no defect)")
    parser.add_argument("images", help="folder of the images scored (the image set, as score --images)")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help=f"folder for {PAGE} and {FIGURES_DIR}/ (files in it are replaced)"
    )
    parser.add_argument(
        "--worst",
        default=str(DEFAULT_WORST),
        metavar="N",
        help=f"show the N images with the lowest mean Dice as overlays (default {DEFAULT_WORST}; 0: none)",
    )
    parser.add_argument(
        "--model",
        nargs="+",
        metavar="MODEL",
        help="run directories, folders of runs or an ensemble .yaml (as for predict): their probabilities on "
        "IMAGES give Dice against the pixel threshold and the minimum area; class names come from it",
    )
    parser.add_argument(
        "--num-classes",
        metavar="N",
        help="number of classes, ids 1..N, when neither --model nor a classes.json beside IMAGES names them "
        "(default 4)",
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="score images the prediction lacks as empty (warns)"
    )
    options.add_tta(parser, "with --model: flip TTA (default: each member's own)")
    options.add_backend(parser, "with --model")
    options.add_device(parser, "with --model: auto (default), cpu, cuda or cuda:N")
    # a string, checked in run: a bad value is the report's one-line error (exit 1), as --worst's
    parser.add_argument("--batch-size", default="4", metavar="N", help="with --model (default 4)")


def run(args: argparse.Namespace) -> None:
    from steelseg.reports import whole_number
    from steelseg.reports.report import ReportInputs, report_class_names, write_report

    # Every option and input is checked before a model loads or a file is written.
    worst = whole_number("--worst", args.worst, 0)
    num_classes = whole_number("--num-classes", args.num_classes, 1) if args.num_classes is not None else None
    load = options.load_options(args) | {"batch_size": whole_number("--batch-size", args.batch_size, 1)}
    inputs = ReportInputs.read(args.pred, args.truth, args.images, args.allow_missing)
    predictor = None
    if args.model:
        from steelseg.inference.predictor import Predictor

        predictor = Predictor.load(args.model, **load)
    class_names = report_class_names(args.images, predictor, num_classes)
    for warning in inputs.warnings:
        print(f"steelseg report: warning: {warning}", file=sys.stderr)
    path = write_report(inputs, args.out, class_names, worst, predictor, progress=not args.quiet)
    print(f"wrote {path}")
