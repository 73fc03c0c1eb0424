"""``steelseg augment-preview DATA``: a PNG grid of augmented training samples with their masks."""

from __future__ import annotations

from steelseg.commands.options import positive_int

HELP = "write a PNG grid of augmented training samples with their masks"


def add_arguments(parser) -> None:
    parser.add_argument("data", nargs="?", help="dataset folder (default: data.root of the config)")
    parser.add_argument("--out", default="augment-preview.png")
    parser.add_argument("--config", default="default", help="YAML file or bundled recipe name")
    parser.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE")
    parser.add_argument("--n", type=positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0)


def run(args) -> None:
    from steelseg.config import load_config
    from steelseg.errors import UsageError
    from steelseg.files.datasets import open_configured
    from steelseg.training.preview import write_augment_preview

    config = load_config(args.config, list(args.set or []) + ([f"data.root={args.data}"] if args.data else []))
    data = config.data
    if not data.root:
        raise UsageError("give a dataset folder (or data.root in the config)")
    path = write_augment_preview(open_configured(data), data, args.out, n=args.n, seed=args.seed)
    print(f"wrote {args.n} augmented samples to {path}")
