"""Options several commands share, built once: the model that predicts (``predict``, ``serve``,
``pseudo``, ``report``) and argparse types for counts.

The choices of ``--backend`` and ``--tta`` come from their registries (``inference.backends.BACKENDS``,
``inference.ensemble.TTA``), so a new backend or TTA set appears here by itself. Those modules
import no torch; they are imported when a parser is built, not when this module is.
"""

from __future__ import annotations

import argparse
import sys

DEVICE_HELP = "auto (default: a GPU if visible), cpu, cuda or cuda:N"
MEMBER_TTA_HELP = "flip TTA for every member (default: each member's own)"
SKIP_BAD_IMAGES_HELP = (
    "leave out images that cannot be read or are of a size the model is not trusted on, each printed "
    "(skipped FILE: reason) with the count at the end, instead of stopping at the first"
)


def at_least(minimum: float, number: type = int, strict: bool = False):
    """An argparse type: a finite ``number`` >= ``minimum`` (> if ``strict``); else a one-line error."""

    def parse(text: str):
        value = number(text)  # a ValueError here is argparse's "invalid int value: 'x'"
        if not (value > minimum if strict else value >= minimum) or value == float("inf"):
            raise argparse.ArgumentTypeError(f"must be {'above' if strict else 'at least'} {minimum}, got {text}")
        return value

    parse.__name__ = number.__name__
    return parse


positive_int = at_least(1)
positive_float = at_least(0, float, strict=True)


def add_models(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("models", nargs="+", metavar="MODEL", help=help)


def add_tta(parser: argparse.ArgumentParser, help: str = MEMBER_TTA_HELP) -> None:
    from steelseg.inference.ensemble import TTA

    parser.add_argument("--tta", choices=list(TTA), help=help)


def add_backend(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    from steelseg.inference.backends import BACKENDS

    parser.add_argument("--backend", default="auto", choices=["auto", *BACKENDS], help=help)


def add_device(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    parser.add_argument("--device", default="auto", help=help)


def add_postprocess(parser: argparse.ArgumentParser, postprocess_help: str, post_help: str) -> None:
    parser.add_argument("--postprocess", metavar="JSON", help=postprocess_help)
    parser.add_argument("--post", action="append", metavar="KEY=VALUE", help=post_help)


def add_windows(parser: argparse.ArgumentParser, number: type, window_help: str) -> None:
    """``--window`` and ``--overlap``; ``window_help`` is formatted with ``{window}``, the default."""
    from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW  # numpy only: no torch

    parser.add_argument(
        "--window", type=number, default=DEFAULT_WINDOW, metavar="PX", help=window_help.format(window=DEFAULT_WINDOW)
    )
    parser.add_argument(
        "--overlap",
        type=number,
        default=DEFAULT_OVERLAP,
        metavar="PX",
        help=f"at least this much overlap between neighbouring windows (default {DEFAULT_OVERLAP})",
    )


def add_skip_bad(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--skip-bad", action="store_true", help=help)


def add_chunk_size(parser: argparse.ArgumentParser) -> None:
    from steelseg.inference.resume import CHUNK  # images per resumable part file

    parser.add_argument("--chunk-size", type=positive_int, default=CHUNK, help=argparse.SUPPRESS)


# option (argparse dest) -> keyword of ``Predictor.load``
LOAD_KEYWORDS = {
    "backend": "backend",
    "device": "device",
    "batch_size": "batch_size",
    "tta": "tta",
    "postprocess": "postprocess",
    "post": "overrides",
    "window": "window",
    "overlap": "overlap",
}


def load_options(args: argparse.Namespace) -> dict:
    """The keywords of ``Predictor.load`` that the shared options of a command gave."""
    load = {keyword: getattr(args, dest) for dest, keyword in LOAD_KEYWORDS.items() if hasattr(args, dest)}
    if hasattr(args, "any_size"):
        load["check_size"] = not args.any_size
    return load


def say(command: str):
    """Lines for people on stderr, named by the command like its errors."""
    return lambda line: print(f"steelseg {command}: {line}", file=sys.stderr, flush=True)


def warn(command: str, message: str) -> None:
    print(f"steelseg {command}: warning: {message}", file=sys.stderr)


def add_distill(parser) -> None:
    parser.add_argument(
        "--distill",
        metavar="STUDENT",
        help="last stage: distill the shipped system into one STUDENT network (a bundled recipe such as default, "
        "or a config YAML), the run DIR/student; 30%% of the budget is kept for it",
    )
