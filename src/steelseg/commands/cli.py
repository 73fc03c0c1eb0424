"""The ``steelseg`` command: a table of commands, one module each (parse, call a library function, print).

Each module of ``COMMANDS`` has ``HELP`` (its line in ``steelseg --help``), ``add_arguments(parser)``
and ``run(args)``. They import the deep-learning stack only inside ``run``, so building the parser
(``steelseg --help``) and the light commands (``score``, ``synth``, ``folds``) import no torch.
"""

from __future__ import annotations

import argparse
import os
import sys

from steelseg.commands import (
    adversarial,
    augment_preview,
    convert,
    demo,
    distill,
    eda,
    export,
    fit,
    folds,
    plan,
    predict,
    pseudo,
    report,
    report_curves,
    score,
    serve,
    synth,
    train,
    tune,
)
from steelseg.errors import SteelsegError

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

COMMANDS = {
    "synth": synth,
    "train": train,
    "folds": folds,
    "augment-preview": augment_preview,
    "predict": predict,
    "tune": tune,
    "export": export,
    "score": score,
    "demo": demo,
    "adversarial": adversarial,
    "pseudo": pseudo,
    "serve": serve,
    "report": report,
    "eda": eda,
    "report-curves": report_curves,
    "plan": plan,
    "fit": fit,
    "convert": convert,
    "distill": distill,
}


def main(argv: list[str] | None = None) -> int:
    """Run one command; 0 on success, 1 for a user mistake (one line on stderr), 2 for no command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        from steelseg import threads  # stdlib only; imported here so that the table itself loads nothing

        threads.configure()  # before any command imports torch: OpenMP reads it at load
        COMMANDS[args.command].run(args)
    except SteelsegError as err:
        print(f"steelseg {args.command}: error: {err}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command in ``COMMANDS``, each with ``--quiet``."""
    parser = argparse.ArgumentParser(prog="steelseg", description="Find and outline defects on photos of steel sheet.")
    from steelseg.version import __version__

    parser.add_argument("--version", action="version", version=f"steelseg {__version__}")
    commands = parser.add_subparsers(dest="command")
    for name, module in COMMANDS.items():
        sub = commands.add_parser(name, help=module.HELP)
        module.add_arguments(sub)
        sub.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


if __name__ == "__main__":
    sys.exit(main())
