"""``steelseg score TRUTH PRED``: the competition's mean Dice of a submission, or the screening
report of class scores. Imports no torch."""

from __future__ import annotations

from steelseg.commands.options import warn

HELP = "score a submission against the truth (competition mean Dice), or class scores (AUC, screening)"


def add_arguments(parser) -> None:
    parser.add_argument("truth")
    parser.add_argument(
        "pred", help="submission CSV, or a class scores CSV from `predict` (ImageId,ClassId,Probability,Present)"
    )
    parser.add_argument(
        "--shape", type=int, nargs=2, default=[256, 1600], metavar=("H", "W"), help="image size (default 256 1600)"
    )
    image_set = parser.add_mutually_exclusive_group()
    image_set.add_argument("--images", metavar="DIR", help="score over the image files of this folder")
    image_set.add_argument("--sample-submission", metavar="CSV", help="score over the image ids this CSV lists")
    classes = parser.add_mutually_exclusive_group()
    classes.add_argument("--num-classes", type=int, metavar="N", help="number of classes, ids 1..N (default 4)")
    classes.add_argument(
        "--run", dest="run_dir", metavar="RUN_DIR", help="take the classes and their names from this run"
    )
    parser.add_argument(
        "--allow-missing", action="store_true", help="score images the prediction lacks as empty (warns)"
    )


def run(args) -> None:
    from steelseg.files.class_scores import is_class_scores
    from steelseg.files.scoring import format_scores, read_image_set, score_files

    run_config, class_names = _classes(args)
    image_set = read_image_set(args.images, args.sample_submission)
    if is_class_scores(args.pred):  # from a classifier, or `predict --scores`: the screening report
        table, warnings = _screening(args, run_config, class_names, image_set)
    else:
        scores, warnings = score_files(
            args.truth, args.pred, tuple(args.shape), len(class_names), image_set, allow_missing=args.allow_missing
        )
        table = format_scores(scores, class_names)
    for warning in warnings:
        warn("score", warning)
    print(table)


def _classes(args):
    """(the run's config or None, the class names: "" for classes without one)."""
    if args.run_dir is not None:
        from steelseg.files.rundir import load_run_config  # only when asked: the run's config names the classes

        run_config = load_run_config(args.run_dir)
        return run_config, run_config.output_class_names
    from steelseg.files.scoring import SEVERSTAL_NUM_CLASSES

    # the default lives here, not in argparse: a default of 4 would let `--num-classes 4 --run X`
    # pass the mutually exclusive group, which compares values with the default by identity
    num_classes = SEVERSTAL_NUM_CLASSES if args.num_classes is None else args.num_classes
    return None, [""] * num_classes


def _screening(args, run_config, class_names: list[str], image_set) -> tuple[str, list[str]]:
    from steelseg.core.screening import format_report
    from steelseg.files.scoring import screen_files

    report, warnings = screen_files(
        args.truth, args.pred, len(class_names), image_set, allow_missing=args.allow_missing
    )
    if run_config is not None:  # the thresholds the Present column was decided with
        from steelseg.files.rundir import load_gate

        report = report.model_copy(update={"screen_threshold": load_gate(args.run_dir, run_config).tolist()})
    return format_report(report, [name or str(i) for i, name in enumerate(class_names, start=1)]), warnings
