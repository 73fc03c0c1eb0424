"""``steelseg pseudo MODEL... IMAGES --out DIR``: the images a model is sure about, as a training
dataset (``inference.pseudo``)."""

from __future__ import annotations

import argparse

from steelseg.commands import options
from steelseg.commands.options import positive_int

HELP = "pseudo-labels: the images a model is sure about, as a training dataset"
EPILOG = (
    "A killed run resumes: each image's verdict is kept in OUT.parts/ (one file per finished 256 images) and "
    "the same command started again judges only the rest; the folder is removed once OUT is written. "
    "Another model or other images or settings are refused: delete OUT.parts/ to start afresh."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steelseg.inference.pseudo_rules import HI, LO, MIN_CONFIDENT_SHARE, RULES  # numpy only

    options.add_models(
        parser,
        "the model that labels the images: run directories, folders of runs or an ensemble .yaml, as for predict",
    )
    parser.add_argument("images", help="folder of unlabelled images (e.g. the test set)")
    parser.add_argument(
        "--out", required=True, help="folder to create: train_images/, train.csv, classes.json, pseudo.json"
    )
    parser.add_argument(
        "--rule",
        choices=RULES,
        default="first",
        help="first (default): every class score > --hi or < --lo and the masks agree; tenth: the "
        "share of confident pixels is at least --confident-share; both",
    )
    parser.add_argument(
        "--hi", type=float, default=HI, help=f"rule first: a class is surely present above this (default {HI})"
    )
    parser.add_argument(
        "--lo", type=float, default=LO, help=f"rule first: a class is surely absent below this (default {LO})"
    )
    parser.add_argument(
        "--confident-share",
        type=float,
        default=MIN_CONFIDENT_SHARE,
        help=f"rule tenth: least share of confident pixels in every class (default {MIN_CONFIDENT_SHARE})",
    )
    parser.add_argument(
        "--rank",
        metavar="ADVERSARIAL_CSV",
        help="order the selected images by their test likeness (adversarial.csv of `steelseg adversarial`: "
        "ImageId,Set,TestLikeness), most test-like first",
    )
    parser.add_argument("--max", type=int, dest="max_images", help="keep at most this many of the selected images")
    options.add_tta(parser)
    options.add_backend(parser)
    options.add_device(parser)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    options.add_skip_bad(parser, options.SKIP_BAD_IMAGES_HELP)
    options.add_chunk_size(parser)
    parser.epilog = EPILOG


def run(args: argparse.Namespace) -> None:
    from steelseg.inference.pseudo import pseudo_labels

    result = pseudo_labels(
        args.models,
        args.images,
        args.out,
        load=options.load_options(args),
        rank_file=args.rank,
        skip_bad=args.skip_bad,
        rule=args.rule,
        hi=args.hi,
        lo=args.lo,
        min_share=args.confident_share,
        max_images=args.max_images,
        progress=not args.quiet,
        chunk_size=args.chunk_size,
        log=options.say("pseudo"),
    )
    print(result.report())
