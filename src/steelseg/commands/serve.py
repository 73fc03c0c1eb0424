"""``steelseg serve MODEL...``: a model over HTTP (``service.serve``).

Building this parser imports no web framework; ``run`` checks every limit and the address
before the model loads. Every option can also come from the environment as
``STEELSEG_<OPTION>`` (``--batch-size``: ``STEELSEG_BATCH_SIZE``), for containers and service
managers that configure by environment; the command line wins.
"""

from __future__ import annotations

import argparse
import os
import shlex

from steelseg.commands import options

HELP = "serve a model over HTTP: POST /predict, GET /model, /health, /ready, /metrics, the viewer page at /"
ENV_PREFIX = "STEELSEG_"
# $STEELSEG_MAX_PIXELS is already every image read's cap (files.images.pixel_limit), with its own
# parsing, and --max-pixels's default comes from it: read twice, the two readings could disagree.
OWN_VARIABLE = {"--max-pixels"}
LATER_OPTIONS = [("--quiet", "quiet")]  # added by cli to every command after add_arguments
ASIDE = "environment_default_of_"  # the dest prefix of an append option's default (see below)
TRUE_WORDS, FALSE_WORDS = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
# option dest, its name, the least value it takes
MINIMUMS = [
    ("window", "--window", 0),
    ("overlap", "--overlap", 0),
    ("batch_size", "--batch-size", 1),
    ("max_queue", "--max-queue", 1),
    ("max_pixels", "--max-pixels", 1),
    ("max_upload_mb", "--max-upload-mb", 1e-6),
    ("max_wait_ms", "--max-wait-ms", 0),
    ("body_timeout", "--body-timeout", 0.001),
    ("header_timeout", "--header-timeout", 0.001),
    ("request_timeout", "--request-timeout", 0.001),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from steelseg.service.serve import API_KEY_ENV  # no web framework

    options.add_models(
        parser,
        "a run directory, a folder of runs, an ensemble .yaml (as for predict) or an exported model .onnx",
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key-env",
        default=API_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the API key clients must send in X-API-Key (default {API_KEY_ENV}; "
        "unset or empty: no key needed). An environment variable, so the key is not in the process list",
    )
    parser.add_argument(
        "--no-auth",
        action="store_true",
        help="serve without an API key on an address other than loopback (refused without this flag)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text, or json: one object per line with time, level, message, request id, route, status, ms",
    )
    _add_limits(parser)
    options.add_tta(parser)
    options.add_postprocess(
        parser, "post-processing file to use (default: the model's)", "override a post-processing value, as for predict"
    )
    options.add_backend(parser, "as for predict; an .onnx model always runs on onnxruntime")
    options.add_device(parser)
    parser.add_argument("--any-size", action="store_true", help="accept images far from the training images' size")
    options.add_windows(
        parser,
        int,
        "predict images wider than this in overlapping windows, blended back (default {window}; "
        "0: whole images): a long strip's memory is bounded by the window",
    )
    _defaults_from_environment(parser)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20 MB; larger: 413)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="largest image in pixels, checked from its header before decoding (default: every image read's cap, "
        "16,384,000 or $STEELSEG_MAX_PIXELS; larger: 413)",
    )
    parser.add_argument("--batch-size", type=int, default=4, help="most images run as one batch (default 4)")
    parser.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests before it runs (default 5 ms)",
    )
    parser.add_argument(
        "--max-queue", type=int, default=64, help="most requests waiting; more are refused with 503 (default 64)"
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="an upload must arrive within this many seconds, else 408 (default 30)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a connection must send its request headers within this many seconds, else it is closed (default 10)",
    )
    parser.add_argument(
        "--request-timeout",
        type=float,
        default=60.0,
        metavar="S",
        help="the model must answer a request within this many seconds, else 504; a batch running longer makes "
        "/ready answer 503 (default 60)",
    )


def run(args: argparse.Namespace) -> None:
    from steelseg.errors import UsageError
    from steelseg.files.images import pixel_limit
    from steelseg.service.serve import serve
    from steelseg.service.settings import ServiceSettings

    given_by = _from_environment(args)  # dest -> the variable that gave it
    for dest, name, low in MINIMUMS:
        value = getattr(args, dest)
        if value is not None and value < low:  # --max-pixels: None is the default cap
            raise UsageError(f"{given_by.get(dest, name)} must be at least {low:g}, got {value:g}")
    if not 0 < args.port < 65536:
        raise UsageError(f"{given_by.get('port', '--port')} {args.port} is not a port number (1-65535)")
    settings = ServiceSettings(
        max_upload_mb=args.max_upload_mb,
        max_pixels=pixel_limit() if args.max_pixels is None else args.max_pixels,
        max_batch=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
        request_timeout_s=args.request_timeout,
    )
    load = options.load_options(args)
    load.pop("batch_size")  # settings.max_batch
    load["window"] = args.window or None  # 0: whole images
    serve(
        args.models,
        settings,
        host=args.host,
        port=args.port,
        api_key_env=args.api_key_env,
        no_auth=args.no_auth,
        load=load,
        log_level="warning" if args.quiet else "info",
        log_format=args.log_format,
    )


class FromEnvironment:
    """The default of option ``dest`` read from the environment variable ``name``: kept as text
    until ``run`` converts it, so that a bad value is a one-line error naming the variable
    (argparse would print its usage and exit 2, naming the option)."""

    def __init__(self, name: str, text: str, parser: argparse.ArgumentParser, dest: str):
        self.name, self.text, self.parser, self.dest = name, text, parser, dest

    def __repr__(self) -> str:
        return f"${self.name}"

    def convert(self):
        from steelseg.errors import UsageError

        action = next(a for a in self.parser._actions if a.dest == self.dest)
        if action.nargs == 0:  # a flag
            if self.text.lower() not in TRUE_WORDS + FALSE_WORDS:
                raise UsageError(f"{self!r}={self.text!r}: expected one of {', '.join(TRUE_WORDS + FALSE_WORDS)}")
            return action.const if self.text.lower() in TRUE_WORDS else not action.const
        if action.nargs in ("+", "*") or isinstance(action, argparse._AppendAction):
            try:
                words = shlex.split(self.text)  # as a shell splits them: quotes keep spaces in a value
            except ValueError as err:
                raise UsageError(f"{self!r}={self.text!r}: {err}") from None
            return [self._value(action, word) for word in words]
        return self._value(action, self.text)

    def _value(self, action: argparse.Action, text: str):
        from steelseg.errors import UsageError

        try:
            value = action.type(text) if action.type else text
        except argparse.ArgumentTypeError as err:
            raise UsageError(f"{self!r}={self.text!r}: {err}") from None
        except (TypeError, ValueError):
            expected = getattr(action.type, "__name__", "another value")
            raise UsageError(f"{self!r}={self.text!r}: expected {expected}") from None
        if action.choices is not None and value not in action.choices:
            raise UsageError(f"{self!r}={self.text!r}: choose from {', '.join(map(str, action.choices))}")
        return value


def _defaults_from_environment(parser: argparse.ArgumentParser) -> None:
    """``STEELSEG_<OPTION>``, where set and not empty, as the default of each option (and of
    --quiet, added later). argparse uses a default only for an option not given, so the command
    line wins."""
    found = [(max(a.option_strings, key=len), a.dest, a) for a in parser._actions if a.option_strings]
    defaults = {}
    for option, dest, action in found + [(option, dest, None) for option, dest in LATER_OPTIONS]:
        name = ENV_PREFIX + option.lstrip("-").replace("-", "_").upper()
        text = os.environ.get(name, "").strip()
        if not text or dest == "help" or option in OWN_VARIABLE:
            continue
        # argparse appends the command line's values to an append option's default, so that
        # default is kept aside and used only when the command line gave none
        aside = isinstance(action, argparse._AppendAction)
        defaults[f"{ASIDE}{dest}" if aside else dest] = FromEnvironment(name, text, parser, dest)
    parser.set_defaults(**defaults)


def _from_environment(args: argparse.Namespace) -> dict[str, str]:
    """Convert, in ``args``, the defaults read from the environment. -> {dest: "$VARIABLE"}."""
    given_by = {}
    for key, value in list(vars(args).items()):
        if not isinstance(value, FromEnvironment):
            continue
        if key.startswith(ASIDE):
            delattr(args, key)
            if getattr(args, value.dest) is not None:  # the command line gave some
                continue
        setattr(args, value.dest, value.convert())
        given_by[value.dest] = repr(value)
    return given_by
