"""The HTTP service (``service.app``) on uvicorn, started from plain settings (``steelseg serve``).

The model is what ``predict`` takes (runs, folders of runs, ensemble files) or an exported
``.onnx`` file, which needs neither torch nor the run directory. This module imports no web
framework until the server starts, so the CLI starts fast without the serve extra.

No open service by accident: on an address other than loopback the service needs an API key,
or ``no_auth`` said explicitly; a server reachable from the network with no key is a choice
someone made, never a forgotten variable.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Callable
from dataclasses import replace

from steelseg.errors import SteelsegError
from steelseg.service.logs import LOG_FORMATS, json_line, log_config
from steelseg.service.settings import ServiceSettings

API_KEY_ENV = "STEELSEG_API_KEY"


class ServiceError(SteelsegError):
    """The service cannot start: its address is taken or not on this machine, it would be open to
    the network without an API key, or the serve extra is not installed."""


def _stdout(line: str) -> None:
    print(line, flush=True)


def _stdout_json(line: str) -> None:
    print(json_line(line), flush=True)


def serve(
    models: list[str | os.PathLike],
    settings: ServiceSettings | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key_env: str | None = API_KEY_ENV,
    no_auth: bool = False,
    load: dict | None = None,
    log_level: str = "info",
    log_format: str = "text",
    say: Callable[[str], None] | None = None,
) -> None:
    """Load ``models`` (``load``: the other keywords of ``Predictor.load``) and serve them on
    ``host:port`` until stopped; ``settings`` (None: the defaults) sets the limits, and its
    ``max_batch`` the batch size. The API key clients must send is read from the environment
    variable ``api_key_env`` (unset or empty: none), so that it is not in the process list;
    without one only a loopback ``host`` is served, unless ``no_auth``. ``log_format``: text
    or json (one object per line). ``say`` (None: stdout, in ``log_format``) hears where it
    serves and whether with a key, once the model is loaded."""
    settings = settings or ServiceSettings()
    if log_format not in LOG_FORMATS:
        raise ServiceError(f"log format {log_format!r}: choose from {', '.join(LOG_FORMATS)}")
    say = say or (_stdout_json if log_format == "json" else _stdout)
    if api_key_env:
        settings = replace(settings, api_key=os.environ.get(api_key_env) or None)
    access = check_auth(host, settings.api_key, api_key_env, no_auth)  # before anything loads
    check_address(host, port)  # before the model loads: a taken port fails at once
    uvicorn, create_app, with_header_timeout = _web_stack()
    from steelseg.hardware import keep_freed_memory
    from steelseg.inference.predictor import Predictor

    keep_freed_memory()
    started = time.perf_counter()
    predictor = Predictor.load(models, batch_size=settings.max_batch, **(load or {}))
    app = create_app(predictor, settings, load_seconds=time.perf_counter() - started)
    for note in predictor.backend_notes():
        say(f"backend {note}")
    say(f"serving {predictor.describe()} on http://{host}:{port} {access}; viewer at /, API docs at /docs")
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=log_config(log_format, log_level),
        access_log=False,  # ``observe`` logs each request, with its id
        http=with_header_timeout(settings.header_timeout_s),
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only: localhost, 127.0.0.0/8 or ::1."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another name: it may resolve to any interface
        return False


def check_auth(host: str, api_key: str | None, api_key_env: str | None, no_auth: bool) -> str:
    """Refuse to serve ``host`` without an API key unless it is loopback or ``no_auth`` says so;
    refuse a key and ``no_auth`` together (which one was meant?). -> words saying how it runs."""
    variable = f"${api_key_env or API_KEY_ENV}"
    if no_auth and api_key:
        raise ServiceError(f"--no-auth given and an API key is set in {variable}: unset one of them")
    if api_key:
        return f"with the API key from {variable}"
    if no_auth:
        return "WITHOUT an API key (--no-auth): anyone who can reach it can use it"
    if not is_loopback(host):
        raise ServiceError(
            f"refusing to serve {host} without an API key: set {variable} (or name another variable with "
            "--api-key-env), or pass --no-auth to serve without one"
        )
    return "without an API key (loopback only)"


def _web_stack():
    """uvicorn, ``create_app`` and the header-timeout protocol; a missing one is one line."""
    try:
        import uvicorn

        from steelseg.service.app import create_app
        from steelseg.service.protocol import with_header_timeout
    except ImportError as err:
        raise ServiceError(
            f"{err.name} is not installed; install the service's extra from steelseg's wheel or clone: "
            "pip install 'dist/steelseg-VERSION-py3-none-any.whl[serve]' (or '.[serve]' in the clone)"
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
