"""``steelseg plan DATA``: the dataset's fingerprint and the plan ``steelseg fit`` would run."""

from __future__ import annotations

from steelseg.commands.options import add_device, add_distill, positive_float

HELP = "fingerprint a dataset and plan a system for it (printed with reasons, written as YAML)"


def add_arguments(parser) -> None:
    parser.add_argument("data", help="dataset: Severstal layout, mask folder, LabelMe folder, COCO JSON or CVAT export")
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=60.0,
        metavar="MINUTES",
        help="time for the whole fit, in minutes (default 60)",
    )
    add_device(parser, "device to plan for and to measure on: auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--out",
        default="plan.yaml",
        metavar="PLAN.yaml",
        help="plan to write (default plan.yaml); the fingerprint goes beside it as <name>-fingerprint.json",
    )
    parser.add_argument(
        "--unlabelled", metavar="IMAGES", help="a folder of unlabelled images: plan pseudo-label rounds"
    )
    parser.add_argument("--system", metavar="NAME", help="a seed team's whole pipeline instead of the rules' plan")
    parser.add_argument("--scale", choices=["full", "tiny"], default="full", help="with --system (see steelseg fit)")
    add_distill(parser)
    parser.add_argument("--force", action="store_true", help="replace an existing plan file")


def run(args) -> None:
    from pathlib import Path

    from steelseg.errors import OutputExistsError
    from steelseg.pipeline.planning import plan_dataset

    out = Path(args.out)
    if out.exists() and not args.force:
        raise OutputExistsError(f"{out} exists (perhaps edited by hand); pass --force to replace it, or another --out")
    if args.scale != "full" and not args.system:
        from steelseg.errors import UsageError

        raise UsageError("--scale tiny goes with --system NAME")
    if args.distill:
        from steelseg.pipeline.fit import check_student

        check_student(args.distill)  # one line, before the probe
    table = plan_dataset(
        args.data, out, args.budget, args.device, args.unlabelled, not args.quiet, args.system, args.scale, args.distill
    )
    print(table)
    print(f"wrote {out}; edit it and run: steelseg fit {args.data} --out DIR --plan {out}")
