"""``steelseg adversarial TRAIN_IMAGES TEST_IMAGES --out DIR``: how test-like each image is, and a
test-like validation fold (``training.adversarial``)."""

from __future__ import annotations

import argparse

from steelseg.commands.options import at_least

HELP = "adversarial validation: how test-like is each image; a test-like validation fold"


def fraction(text: str) -> float:
    """An argparse type: a float strictly between 0 and 1; else a one-line error."""
    value = float(text)  # a ValueError here is argparse's "invalid float value"
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


fraction.__name__ = "float"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("train_images", help="folder of training images")
    parser.add_argument("test_images", help="folder of test images")
    parser.add_argument("--out", required=True, help="output folder (gets adversarial.csv, folds.csv, data/, runs/)")
    parser.add_argument("--k", type=at_least(2), default=3, help="folds of the train-vs-test classifier (default 3)")
    parser.add_argument(
        "--val-fraction",
        type=fraction,
        default=0.2,
        help="share of the training images in the test-like fold 0 of folds.csv (default 0.2)",
    )
    parser.add_argument(
        "--minutes", type=at_least(0, float, strict=True), help="rough training budget, all folds together"
    )
    parser.add_argument(
        "--config", help="YAML file or bundled recipe (default: a small resnet18 on quarter-size images)"
    )
    parser.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the classifier's folds")


def run(args: argparse.Namespace) -> None:
    from steelseg.training.adversarial import run_adversarial

    result = run_adversarial(
        args.train_images,
        args.test_images,
        args.out,
        config=args.config,
        overrides=list(args.set or []),
        k=args.k,
        val_fraction=args.val_fraction,
        minutes=args.minutes,
        seed=args.seed,
        progress=not args.quiet,
    )
    print(result.report())
