"""``steelseg train DATA --out RUN_DIR``: train a model into a run directory, or resume one."""

from __future__ import annotations

from steelseg.commands.options import at_least, positive_int

HELP = "train a model (model.task: segment, classify, two_head, instance) into a run directory"
# what --resume takes nothing else of: the run's config.yaml says it all
NOT_WITH_RESUME = ("data", "out", "set", "epochs", "max_minutes", "fold", "folds", "per_class", "skip_bad")


def add_arguments(parser) -> None:
    parser.add_argument("data", nargs="?", help="dataset folder (severstal or mask-folder layout)")
    parser.add_argument("--out", help="run directory to create")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue a stopped or killed run from its last finished epoch"
    )
    parser.add_argument("--config", default="default", help="YAML file or bundled recipe name (default: default)")
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--max-minutes", type=at_least(0, float, strict=True))
    parser.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)"
    )
    parser.add_argument("--folds", help="folds CSV from `steelseg folds` (sets data.folds)")
    parser.add_argument("--fold", help="validation fold: a number, or 'all' to train every fold and print the CV table")
    parser.add_argument("--per-class", action="store_true", help="one binary model per class, in OUT/class-<id>-<name>")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images and bad rows, each printed and listed in RUN_DIR/skipped.txt, instead of "
        "stopping at the first (sets data.skip_bad; every image is decoded once before training)",
    )


def run(args) -> None:
    from steelseg.errors import UsageError
    from steelseg.training.launch import resume_run, train_run

    if args.resume:
        if any(getattr(args, name) for name in NOT_WITH_RESUME):
            raise UsageError("--resume RUN_DIR takes nothing else: the run's config.yaml says it all")
        print(resume_run(args.resume, progress=not args.quiet, say=lambda line: print(line, flush=True)))
        return
    if not args.out:
        raise UsageError("--out RUN_DIR is required (or --resume RUN_DIR)")
    print(
        train_run(
            args.config, _overrides(args), args.out, fold=args.fold, per_class=args.per_class, progress=not args.quiet
        )
    )


def _overrides(args) -> list[str]:
    """The options as config overrides, after the --set ones."""
    overrides = list(args.set or [])
    if args.skip_bad:
        overrides.append("data.skip_bad=true")
    if args.data:
        overrides.append(f"data.root={args.data}")
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    if args.max_minutes:
        overrides.append(f"train.max_minutes={args.max_minutes}")
    if args.folds:
        overrides.append(f"data.folds={args.folds}")
    return overrides
