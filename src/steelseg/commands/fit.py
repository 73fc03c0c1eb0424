"""``steelseg fit DATA --out DIR``: from a dataset to a tuned, exported, reported system."""

from __future__ import annotations

from steelseg.commands.options import add_device, add_distill, positive_float

HELP = "plan, train, select, tune, export and report a whole system from a dataset, within a budget"


def add_arguments(parser) -> None:
    parser.add_argument("data", help="dataset: Severstal layout, mask folder, LabelMe folder, COCO JSON or CVAT export")
    parser.add_argument("--out", required=True, metavar="DIR", help="system folder to write (run again to continue)")
    parser.add_argument(
        "--budget",
        type=positive_float,
        default=60.0,
        metavar="MINUTES",
        help="time for everything, in minutes (default 60)",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--plan", metavar="PLAN.yaml", help="run this plan (from `steelseg plan`, edited or not)")
    which.add_argument("--system", metavar="NAME", help="a seed team's whole pipeline as a plan (see the README)")
    parser.add_argument(
        "--scale",
        choices=["full", "tiny"],
        default="full",
        help="with --system: tiny shrinks it to run in minutes (tiny encoders, few epochs)",
    )
    parser.add_argument(
        "--unlabelled",
        metavar="IMAGES",
        help="unlabelled images for pseudo-label rounds (and the distilled student's soft targets)",
    )
    add_distill(parser)
    add_device(parser, "device to plan for: auto (default), cpu, cuda, cuda:N")
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images and bad annotations (each printed, listed in the runs' skipped.txt)",
    )
    from steelseg.pipeline.executors import EXECUTORS  # plain functions: Ray is imported only when used

    parser.add_argument(
        "--executor",
        choices=list(EXECUTORS),
        default="local",
        help="where member x fold trainings run: here one after another (default), or as Ray tasks "
        "(the steelseg[cluster] extra), one GPU each where there are GPUs",
    )
    parser.add_argument(
        "--address", metavar="HEAD", help="with --executor ray: a running Ray cluster's head (default: a local cluster)"
    )


def run(args) -> None:
    from pathlib import Path

    from steelseg.errors import UsageError
    from steelseg.hardware import resolve_device
    from steelseg.pipeline.fit import FitRequest, describe_result, fit

    if args.scale != "full" and not args.system:
        raise UsageError("--scale tiny goes with --system NAME")
    if args.address and args.executor != "ray":
        raise UsageError("--address goes with --executor ray")
    request = FitRequest(
        data=args.data,
        out=Path(args.out),
        budget_minutes=args.budget,
        plan=args.plan,
        system=args.system,
        scale=args.scale,
        unlabelled=args.unlabelled,
        device=resolve_device(args.device),
        progress=not args.quiet,
        executor=args.executor,
        skip_bad=args.skip_bad,
        address=args.address,
        distill=args.distill,
    )
    out = fit(request)
    print(describe_result(out))
