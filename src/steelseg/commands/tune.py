"""``steelseg tune MODEL...``: an ensemble's gated post-processing and member temperatures, tuned on
out-of-fold files."""

from __future__ import annotations

HELP = "tune an ensemble's gated post-processing and member temperatures on out-of-fold files (Dice)"
GRIDS = ("pixel_grid", "component_grid", "area_grid", "head_grid", "peak_grid")


def add_arguments(parser) -> None:
    parser.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="runs with oof.npz (train --fold all writes them), folders of runs or an ensemble .yaml",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="where postprocess.json (and, for several models, ensemble.yaml) go; default: the model's folder",
    )
    parser.add_argument(
        "--pixel-grid", type=float, nargs="+", metavar="P", help="pixel thresholds to try (default 0.2 .. 0.85)"
    )
    parser.add_argument(
        "--component-grid",
        type=int,
        nargs="+",
        metavar="PX",
        help="connected-component sizes to try, full-size pixels (default 0 50 100 150 250 400)",
    )
    parser.add_argument(
        "--area-grid",
        type=int,
        nargs="+",
        metavar="PX",
        help="minimum class areas to try (default: the config's min_area_grid); a size that switches a class "
        "off (2147483647, or over the largest image) is tried only with --allow-off",
    )
    parser.add_argument(
        "--head-grid",
        "--label-grid",  # its name before head_threshold was
        type=float,
        nargs="+",
        metavar="P",
        help="class-head gates to try (default 0.3 .. 0.9, and none)",
    )
    parser.add_argument(
        "--peak-grid",
        type=float,
        nargs="+",
        metavar="P",
        help="max / top-K gates to try (default 0.3 .. 0.9, and none)",
    )
    parser.add_argument(
        "--min-area-quantile",
        type=float,
        metavar="Q",
        help="minimum areas from this quantile of the true mask sizes instead of the search (5th place: 0.02)",
    )
    parser.add_argument("--fill-holes", action="store_true", help="fill holes in the masks (tuned with it)")
    parser.add_argument(
        "--soft-gate", action="store_true", help="multiply pixel probabilities by the class heads' (tuned with it)"
    )
    parser.add_argument("--no-temperature", action="store_true", help="keep every member's temperature at 1")
    _add_choice(parser)


def _add_choice(parser) -> None:
    """What the search may choose, and what it maximises."""
    parser.add_argument(
        "--metric",
        default="competition",
        metavar="{competition,dataset}",
        help="what the search maximises, per class: competition (default), the mean over images of each "
        "image's Dice, an empty prediction of an empty truth scoring 1; or dataset, 2 x the predicted true "
        "pixels / (predicted + true pixels) summed over all images",
    )
    parser.add_argument(
        "--recall-floor",
        type=float,
        metavar="R",
        help="only settings that still find at least this share (0 to 1) of the images with a true defect of a "
        "class (a predicted pixel of the class on the image) are eligible; where none on the grid does, the one "
        "that finds the most (said in the report). Default: no floor",
    )
    parser.add_argument(
        "--allow-off",
        action="store_true",
        help="let the search switch a class off (never predict it) where that scores best; by default every "
        "class stays on, and a sources' own setting that is off is not kept",
    )


def run(args) -> None:
    from steelseg.inference.tune import tune

    grids = {name: getattr(args, name) for name in GRIDS if getattr(args, name)}
    result = tune(
        args.models,
        args.out,
        min_area_quantile=args.min_area_quantile,
        fill_holes=args.fill_holes,
        soft_gate=args.soft_gate,
        temperatures=not args.no_temperature,
        progress=not args.quiet,
        metric=args.metric,
        recall_floor=args.recall_floor,
        allow_off=args.allow_off,
        **grids,
    )
    print(result.report())
