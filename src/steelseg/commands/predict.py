"""``steelseg predict MODEL... IMAGES --out CSV``: a folder of images into a submission (class
scores for classifiers)."""

from __future__ import annotations

import argparse

from steelseg.commands import options
from steelseg.commands.options import at_least, positive_int

HELP = "predict a folder of images with a run or an ensemble into a submission CSV (class scores for classifiers)"
EPILOG = (
    "A killed or failed prediction resumes: progress is kept in OUT.parts/ (one file per finished 256 images) and "
    "the same command started again (--skip-bad may be added) predicts only the rest, for the same submission; "
    "the folder is removed once OUT is written. Another model, other weights, other images or other settings "
    "are refused: delete OUT.parts/ to start afresh. Sharded prediction (torchrun) and classifiers alone do not "
    "resume."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_models(
        parser,
        "a run directory, a folder of runs (train --fold all or --per-class: each run a member) or an "
        "ensemble .yaml; several are averaged",
    )
    parser.add_argument("images", help="folder of images")
    _add_outputs(parser)
    _add_model_options(parser)
    options.add_skip_bad(
        parser,
        options.SKIP_BAD_IMAGES_HELP + "; the submission still lists every image, a skipped one with empty masks "
        "(no defect), and --scores leaves it out",
    )
    options.add_chunk_size(parser)
    parser.epilog = EPILOG


def _add_outputs(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", required=True, help="submission CSV to write; for classifiers alone, their class scores CSV"
    )
    parser.add_argument(
        "--scores", metavar="CSV", help="also write each image's class scores (ImageId,ClassId,Probability,Present)"
    )
    parser.add_argument(
        "--layout",
        choices=["long", "2019"],
        default="long",
        help="CSV layout (default long: ImageId,ClassId,EncodedPixels)",
    )
    parser.add_argument(
        "--review",
        type=positive_int,
        metavar="N",
        help="also write the N images the model is least sure of, with its masks as pre-annotations for CVAT "
        "(COCO 1.0) and LabelMe, into --review-out (the README's Review loop)",
    )
    parser.add_argument("--review-out", metavar="DIR", help="with --review: the new or empty folder to write into")


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    options.add_tta(
        parser,
        "flip TTA for every member, averaged in probability space (both: none+hflip+vflip, 3x the time); "
        "default: each member's own (none for runs)",
    )
    options.add_postprocess(
        parser,
        "post-processing file to use (default: the ensemble's, e.g. from `steelseg tune`)",
        "override a post-processing value, for every class or per class: pixel_threshold=0.55, "
        "min_area=[600,600,900,2000], min_component=150, fill_holes=true, head_threshold=0.6, "
        "peak_threshold=[0.7,0.7,0.6,0.6], peak=top_k, peak_top_k=100, soft_gate=true (repeatable)",
    )
    parser.add_argument(
        "--time-budget",
        type=at_least(0, float, strict=True),
        metavar="MINUTES",
        help="project the total after the first batches and stop with an error when it will not fit",
    )
    parser.add_argument("--drop-tta", action="store_true", help="with --time-budget: drop TTA instead of stopping")
    options.add_backend(
        parser,
        "auto (default): torch-amp where the hardware has fast half precision (bf16 CPU, GPU), else "
        "torch; torch: exact fp32; onnx: the run's model.onnx (steelseg export) on onnxruntime",
    )
    options.add_device(parser)
    parser.add_argument("--batch-size", type=positive_int, default=4)
    parser.add_argument(
        "--any-size",
        action="store_true",
        help="predict images whose size is far from the training images' (by default an error)",
    )
    options.add_windows(
        parser,
        at_least(0),
        "predict images wider than this in overlapping windows this wide, blended back (default {window}, "
        "rounded down to a multiple of the networks' input step; 0: always whole images)",
    )


def run(args: argparse.Namespace) -> None:
    from steelseg.errors import UsageError
    from steelseg.inference.predict_files import predict_files

    if args.drop_tta and not args.time_budget:
        raise UsageError("--drop-tta needs --time-budget MINUTES")
    written = predict_files(
        args.models,
        args.images,
        args.out,
        load=options.load_options(args),
        scores=args.scores,
        layout=args.layout,
        time_budget=args.time_budget,
        drop_tta=args.drop_tta,
        skip_bad=args.skip_bad,
        chunk_size=args.chunk_size,
        progress=not args.quiet,
        log=options.say("predict"),
        review=args.review,
        review_out=args.review_out,
    )
    for line in written.lines:
        print(line)
    if written.skipped:
        options.warn("predict", written.skipped)
