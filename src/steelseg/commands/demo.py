"""``steelseg demo``: synthesise data, train, predict, score, draw: the whole path."""

from __future__ import annotations

from steelseg.commands.options import positive_int

HELP = "synthesise data, train, predict, score, draw: the whole path"


def add_arguments(parser) -> None:
    parser.add_argument("--out", default="demo-output")
    parser.add_argument("--n-train", type=positive_int, default=240)
    parser.add_argument("--n-test", type=positive_int, default=60)
    parser.add_argument("--config", default="demo", help="YAML file or bundled recipe (default: demo)")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")


def run(args) -> None:
    from steelseg.config import load_config
    from steelseg.pipeline.demo import run_demo

    config = load_config(args.config, args.set)
    run_demo(args.out, n_train=args.n_train, n_test=args.n_test, config=config, progress=not args.quiet)
