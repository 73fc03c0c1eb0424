"""``steelseg distill TEACHER... DATA --out RUN``: train a student run on a teacher's probabilities."""

from __future__ import annotations

import argparse

from steelseg.commands import options
from steelseg.commands.options import at_least, positive_int

HELP = "distil a teacher (runs, folds, ensembles, .onnx; with their TTA) into a student run"
EPILOG = (
    "The teacher's probabilities on DATA's training images and on --unlabelled are computed once and kept in "
    "RUN/teacher/ (float16 chunks, checksummed): a killed distill started again with the same command computes "
    "only what is missing, and `steelseg distill --resume RUN` continues a student that finished an epoch. "
    "loss = distill.alpha x BCE against the teacher + (1 - alpha) x the recipe's loss on the true masks; "
    "unlabelled images get the first part only. The result is a normal run directory for predict, export, serve."
)
NOT_WITH_RESUME = ("models", "out", "set", "epochs", "unlabelled", "alpha", "temperature", "tta")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="*",
        metavar="TEACHER... DATA",
        help="the teacher (anything `predict` takes; several are averaged), then the dataset folder",
    )
    parser.add_argument("--out", help="student run directory to create")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped or killed student run")
    parser.add_argument("--unlabelled", metavar="IMAGES", help="folder of images without masks: the soft loss only")
    parser.add_argument(
        "--config", default="default", help="the student: YAML file or bundled recipe (default: default)"
    )
    parser.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)"
    )
    parser.add_argument("--epochs", type=positive_int)
    parser.add_argument("--alpha", type=at_least(0, float), help="weight of the soft loss (distill.alpha, default 0.5)")
    parser.add_argument("--temperature", type=options.positive_float, help="distill.temperature (default 1)")
    options.add_tta(parser, "the teacher's flip TTA (default: each teacher member's own)")
    options.add_backend(parser, "the teacher's backend, as for predict (default auto)")
    options.add_device(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> None:
    from steelseg.errors import UsageError
    from steelseg.training.launch import distill_run, resume_run

    if args.resume:
        if any(getattr(args, name) for name in NOT_WITH_RESUME):
            raise UsageError("--resume RUN_DIR takes nothing else: the run's config.yaml says it all")
        print(resume_run(args.resume, progress=not args.quiet, say=lambda line: print(line, flush=True)))
        return
    if len(args.models) < 2:
        raise UsageError("give the TEACHER (one or more) and then DATA, e.g. steelseg distill cv/unet data --out run")
    if not args.out:
        raise UsageError("--out RUN_DIR is required (or --resume RUN_DIR)")
    if args.alpha is not None and args.alpha > 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {args.alpha}")
    overrides = list(args.set or [])
    if args.epochs:
        overrides.append(f"train.epochs={args.epochs}")
    teacher = {"backend": args.backend, "device": args.device}
    for name in ("alpha", "temperature", "tta"):
        if getattr(args, name) is not None:
            teacher[name] = getattr(args, name)
    report = distill_run(
        args.models[:-1],
        args.models[-1],
        args.out,
        config=args.config,
        overrides=overrides,
        unlabelled=args.unlabelled,
        progress=not args.quiet,
        **teacher,
    )
    print(report)
