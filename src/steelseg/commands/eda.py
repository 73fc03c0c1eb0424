"""``steelseg eda DATA --out DIR``: an HTML page about a data set (``reports.eda``)."""

from __future__ import annotations

import argparse

HELP = "an HTML page about a data set: class counts, classes per image, mask areas, examples"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steelseg.reports.eda import DEFAULT_EXAMPLES, FIGURES_DIR, PAGE  # no matplotlib

    parser.add_argument("data", help="dataset folder (severstal or mask-folder layout), as for train")
    parser.add_argument(
        "--out", required=True, metavar="DIR", help=f"folder for {PAGE} and {FIGURES_DIR}/ (files in it are replaced)"
    )
    parser.add_argument(
        "--examples",
        default=str(DEFAULT_EXAMPLES),
        metavar="K",
        help=f"example overlays per class (default {DEFAULT_EXAMPLES}; 0: none)",
    )


def run(args: argparse.Namespace) -> None:
    from steelseg.reports import whole_number
    from steelseg.reports.eda import write_eda

    examples = whole_number("--examples", args.examples, 0)
    print(f"wrote {write_eda(args.data, args.out, examples)}")
