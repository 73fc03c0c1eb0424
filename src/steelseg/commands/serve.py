"""``steelseg serve MODEL...``: a model over HTTP (``service.serve``).

Building this parser imports no web framework; ``run`` checks every limit and the address
before the model loads.
"""

from __future__ import annotations

import argparse

from steelseg.commands import options

HELP = "serve a model over HTTP: POST /predict, GET /model, /health, the viewer page at /"
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


def run(args: argparse.Namespace) -> None:
    from steelseg.errors import UsageError
    from steelseg.files.images import pixel_limit
    from steelseg.service.serve import serve
    from steelseg.service.settings import ServiceSettings

    for dest, name, low in MINIMUMS:
        value = getattr(args, dest)
        if value is not None and value < low:  # --max-pixels: None is the default cap
            raise UsageError(f"{name} must be at least {low:g}, got {value:g}")
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port} is not a port number (1-65535)")
    settings = ServiceSettings(
        max_upload_mb=args.max_upload_mb,
        max_pixels=pixel_limit() if args.max_pixels is None else args.max_pixels,
        max_batch=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
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
        load=load,
        log_level="warning" if args.quiet else "info",
    )
