"""``steelseg synth OUT``: synthetic steel strips in the competition's layout."""

from __future__ import annotations

from steelseg.commands.options import positive_int

HELP = "write synthetic steel strips in the competition's layout"


def add_arguments(parser) -> None:
    parser.add_argument("out", help="output folder (gets train_images/, train.csv, classes.json)")
    parser.add_argument("--n", type=positive_int, default=100, help="number of strips (default 100)")
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> None:
    from steelseg.files.synth import write_dataset

    out = write_dataset(args.out, args.n, seed=args.seed, progress=not args.quiet)
    print(f"wrote {args.n} strips to {out / 'train_images'} and their masks to {out / 'train.csv'}")
