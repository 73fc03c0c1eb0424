"""``steelseg convert SRC --to masks OUT``: LabelMe, COCO, CVAT or Severstal data as a mask folder."""

from __future__ import annotations

import sys

HELP = "convert LabelMe, COCO, CVAT or Severstal annotations to a mask folder (images/ + masks/)"
FROM = ("auto", "labelme", "coco", "cvat", "severstal")  # files.importers.IMPORTERS, without importing it


def add_arguments(parser) -> None:
    parser.add_argument("src", metavar="SRC", help="the data set: a folder, or a COCO .json")
    parser.add_argument("out", metavar="OUT", help="output folder (new, empty, or an earlier conversion of SRC)")
    parser.add_argument("--to", choices=["masks"], default="masks", help="output layout (masks: images/ + masks/)")
    parser.add_argument(
        "--from", dest="fmt", choices=FROM, default="auto", help="input format (default: auto, from the files)"
    )
    parser.add_argument(
        "--images", metavar="DIR", help="folder of the images, where the annotations do not say where they are"
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out images with a bad annotation or a missing file (each printed) instead of stopping",
    )


def run(args) -> None:
    from steelseg.files.importers import convert

    result = convert(args.src, args.out, args.fmt, args.images, skip_bad=args.skip_bad, progress=not args.quiet)
    for skip in result.skipped:
        print(f"skipped {skip.message}", file=sys.stderr)
    print("\n".join(result.summary()))
