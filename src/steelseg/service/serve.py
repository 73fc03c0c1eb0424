"""``steelseg serve MODEL...``: the HTTP service (``service.app``) on uvicorn.

The model is what ``predict`` takes (runs, folders of runs, ensemble files) or an exported
``.onnx`` file, which needs neither torch nor the run directory. This module imports no web
framework until the command runs, so the CLI starts fast without the serve extra.
"""

from __future__ import annotations

import os
import socket

API_KEY_ENV = "STEELSEG_API_KEY"


def add_parser(commands) -> None:
    """Register ``steelseg serve`` on the CLI's sub-command parsers."""
    from steelseg.inference.windows import DEFAULT_OVERLAP, DEFAULT_WINDOW  # numpy only: no torch, no web framework

    p = commands.add_parser(
        "serve", help="serve a model over HTTP: POST /predict, GET /model, /health, the viewer page at /"
    )
    p.add_argument(
        "models",
        nargs="+",
        metavar="MODEL",
        help="a run directory, a folder of runs, an ensemble .yaml (as for predict) or an exported model .onnx",
    )
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1; 0.0.0.0 for every interface)"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key-env",
        default=API_KEY_ENV,
        metavar="NAME",
        help=f"environment variable holding the API key clients must send in X-API-Key (default {API_KEY_ENV}; "
        "unset or empty: no key needed). An environment variable, so the key is not in the process list",
    )
    p.add_argument(
        "--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20 MB; larger: 413)"
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        metavar="N",
        help="largest image in pixels, checked from its header before decoding (default: every image read's cap, "
        "16,384,000 or $STEELSEG_MAX_PIXELS; larger: 413)",
    )
    p.add_argument("--batch-size", type=int, default=4, help="most images run as one batch (default 4)")
    p.add_argument(
        "--max-wait-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more requests before it runs (default 5 ms)",
    )
    p.add_argument(
        "--max-queue", type=int, default=64, help="most requests waiting; more are refused with 503 (default 64)"
    )
    p.add_argument(
        "--body-timeout",
        type=float,
        default=30.0,
        metavar="S",
        help="an upload must arrive within this many seconds, else 408 (default 30)",
    )
    p.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="a connection must send its request headers within this many seconds, else it is closed (default 10)",
    )
    p.add_argument(
        "--tta",
        choices=["none", "hflip", "vflip", "both"],
        help="flip TTA for every member (default: each member's own)",
    )
    p.add_argument("--postprocess", metavar="JSON", help="post-processing file to use (default: the model's)")
    p.add_argument(
        "--post", action="append", metavar="KEY=VALUE", help="override a post-processing value, as for predict"
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "torch-amp", "onnx"],
        help="as for predict; an .onnx model always runs on onnxruntime",
    )
    p.add_argument("--device", default="auto", help="auto (default: a GPU if visible), cpu, cuda or cuda:N")
    p.add_argument("--any-size", action="store_true", help="accept images far from the training images' size")
    p.add_argument(
        "--window",
        type=int,
        default=DEFAULT_WINDOW,
        metavar="PX",
        help=f"predict images wider than this in overlapping windows, blended back (default {DEFAULT_WINDOW}; "
        "0: whole images): a long strip's memory is bounded by the window",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        metavar="PX",
        help=f"at least this much overlap between neighbouring windows (default {DEFAULT_OVERLAP})",
    )
    p.set_defaults(run=_run)


def _run(args) -> None:
    pixels = 1 if args.max_pixels is None else args.max_pixels
    minimums = [
        ("--window", args.window, 0),
        ("--overlap", args.overlap, 0),
        ("--batch-size", args.batch_size, 1),
        ("--max-queue", args.max_queue, 1),
        ("--max-pixels", pixels, 1),
        ("--max-upload-mb", args.max_upload_mb, 1e-6),
        ("--max-wait-ms", args.max_wait_ms, 0),
        ("--body-timeout", args.body_timeout, 0.001),
        ("--header-timeout", args.header_timeout, 0.001),
    ]
    for name, value, low in minimums:
        if value < low:
            raise SystemExit(f"steelseg serve: error: {name} must be at least {low:g}, got {value:g}")
    if not 0 < args.port < 65536:
        raise SystemExit(f"steelseg serve: error: --port {args.port} is not a port number (1-65535)")
    _check_address(args.host, args.port)  # before the model loads: a taken port fails at once
    try:
        import uvicorn

        from steelseg.service.app import ServiceSettings, create_app
        from steelseg.service.protocol import with_header_timeout
    except ImportError as err:
        raise SystemExit(
            f"steelseg serve: error: {err.name} is not installed; install the service's extra: pip install 'steelseg[serve]'"
        ) from None
    from steelseg.files.images import pixel_limit
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference.predictor import Predictor

    keep_freed_memory()
    predictor = Predictor.load(
        args.models,
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        check_size=not args.any_size,
        tta=args.tta,
        postprocess=args.postprocess,
        overrides=args.post,
        window=args.window or None,
        overlap=args.overlap,
    )
    settings = ServiceSettings(
        api_key=os.environ.get(args.api_key_env) or None,
        max_upload_mb=args.max_upload_mb,
        max_pixels=pixel_limit() if args.max_pixels is None else args.max_pixels,
        max_batch=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        body_timeout_s=args.body_timeout,
        header_timeout_s=args.header_timeout,
    )
    app = create_app(predictor, settings)
    key = f"API key from ${args.api_key_env}" if settings.api_key else "no API key"
    print(
        f"serving {predictor.describe()} on http://{args.host}:{args.port} ({key}); viewer at /, API docs at /docs",
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning" if args.quiet else "info",
        http=with_header_timeout(settings.header_timeout_s),
    )


def _check_address(host: str, port: int) -> None:
    """Bind and release the address as uvicorn will (SO_REUSEADDR), so that a taken port or an
    address not on this machine is one line now, not a log line after the model has loaded."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise SystemExit(f"steelseg serve: error: cannot listen on {host}:{port} ({err.strerror or err})") from None
