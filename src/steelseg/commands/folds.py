"""``steelseg folds DATA --out CSV``: k stratified folds, near-duplicates kept together."""

from __future__ import annotations

from steelseg.commands.options import at_least

HELP = "split a dataset into k folds, stratified, near-duplicates kept together"


def add_arguments(parser) -> None:
    parser.add_argument("data", help="dataset folder (severstal or mask-folder layout)")
    parser.add_argument("--out", required=True, help="CSV to write (ImageId,Fold,Group)")
    parser.add_argument("--k", type=at_least(2), default=5, help="number of folds (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-distance",
        type=int,
        default=4,
        help="hash bits two near-duplicates may differ in (default 4; tightened when one group would hold "
        "more images than a fold)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images and bad rows (printed), as train --skip-bad does",
    )


def run(args) -> None:
    from steelseg.config import DataConfig
    from steelseg.files.datasets import open_configured
    from steelseg.files.folds import make_folds, write_folds

    dataset = open_configured(DataConfig(root=args.data, skip_bad=args.skip_bad), progress=not args.quiet)
    table = make_folds(dataset, k=args.k, seed=args.seed, max_distance=args.max_distance, progress=not args.quiet)
    write_folds(args.out, table)
    print(table.summary())
    print(f"wrote {len(table.image_ids)} rows to {args.out}")
    if args.skip_bad:
        print(f"--skip-bad: left out {len(dataset.skipped)} bad rows or images (train with --skip-bad too)")
