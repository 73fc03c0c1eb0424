"""The HTTP service (``service.app``) on uvicorn, started from plain settings (``steelseg serve``).

The model is what ``predict`` takes (runs, folders of runs, ensemble files) or an exported
``.onnx`` file, which needs neither torch nor the run directory. This module imports no web
framework until the server starts, so the CLI starts fast without the serve extra.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace

from steelseg.errors import SteelsegError
from steelseg.service.settings import ServiceSettings

API_KEY_ENV = "STEELSEG_API_KEY"


class ServiceError(SteelsegError):
    """The service cannot start: its address is taken or not on this machine, or the serve extra
    is not installed."""


def _stdout(line: str) -> None:
    print(line, flush=True)


def serve(
    models: list[str | os.PathLike],
    settings: ServiceSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = API_KEY_ENV,
    load: dict | None = None,
    log_level: str = "info",
    say: Callable[[str], None] = _stdout,
) -> None:
    """Load ``models`` (``load``: the other keywords of ``Predictor.load``) and serve them on
    ``host:port`` until stopped; ``settings`` (None: the defaults) sets the limits, and its
    ``max_batch`` the batch size. The API key clients must send is read from the environment
    variable ``api_key_env`` (unset or empty: none), so that it is not in the process list.
    ``say`` hears where it serves, once the model is loaded."""
    settings = settings or ServiceSettings()
    check_address(host, port)  # before the model loads: a taken port fails at once
    uvicorn, create_app, with_header_timeout = _web_stack()
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference.predictor import Predictor

    keep_freed_memory()
    predictor = Predictor.load(models, batch_size=settings.max_batch, **(load or {}))
    if api_key_env:
        settings = replace(settings, api_key=os.environ.get(api_key_env) or None)
    app = create_app(predictor, settings)
    key = f"API key from ${api_key_env}" if settings.api_key else "no API key"
    for note in predictor.backend_notes():
        say(f"backend {note}")
    say(f"serving {predictor.describe()} on http://{host}:{port} ({key}); viewer at /, API docs at /docs")
    uvicorn.run(app, host=host, port=port, log_level=log_level, http=with_header_timeout(settings.header_timeout_s))


def _web_stack():
    """uvicorn, ``create_app`` and the header-timeout protocol; a missing one is one line."""
    try:
        import uvicorn

        from steelseg.service.app import create_app
        from steelseg.service.protocol import with_header_timeout
    except ImportError as err:
        raise ServiceError(
            f"{err.name} is not installed; install the service's extra: pip install 'steelseg[serve]'"
        ) from None
    return uvicorn, create_app, with_header_timeout


def check_address(host: str, port: int) -> None:
    """Bind and release the address as uvicorn will (SO_REUSEADDR), so that a taken port or an
    address not on this machine is one line now, not a log line after the model has loaded."""
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as err:
        raise ServiceError(f"cannot listen on {host}:{port} ({err.strerror or err})") from None
