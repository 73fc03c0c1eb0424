"""What every request leaves behind: its request id (echoed in ``X-Request-ID``), its metrics
and its access log line. Pure ASGI and the outermost middleware, so that the refusals made
before the body is read (``guard``) carry the id and are counted too; an error no handler
answered becomes a logged 500 with the id, here, because Starlette's own 500 is sent from
outside every middleware and would carry none.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid

from steelseg.service.logs import request_id
from steelseg.service.metrics import ServiceMetrics

REQUEST_ID_HEADER = "x-request-id"
# a client's id is kept when it is a plain token of sane length: it lands in logs and headers
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
OTHER_ROUTE = "other"  # every unknown path under one label, so a scan cannot grow the metrics

access_log = logging.getLogger("steelseg.access")
log = logging.getLogger("steelseg.service")


def new_request_id(sent: bytes | None) -> str:
    """The client's ``X-Request-ID`` if it is sane, else a new uuid4 hex."""
    text = sent.decode("latin-1") if sent else ""
    return text if SANE_REQUEST_ID.fullmatch(text) else uuid.uuid4().hex


class Observe:
    """ASGI middleware: a request id for each HTTP request, in the response's ``X-Request-ID``
    header and in every log line logged while it is answered; its route, status and time in
    ``metrics`` and in one access line. ``routes``: the paths counted under their own name."""

    def __init__(self, app, metrics: ServiceMetrics, routes: set[str]):
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = new_request_id(dict(scope["headers"]).get(REQUEST_ID_HEADER.encode()))
        token = request_id.set(rid)
        started = time.perf_counter()
        status = None

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error answering %s %s", scope["method"], scope["path"])
            if status is None:
                status = 500
                await _internal_error(send_with_id)
        finally:
            if status is not None:  # else the task was cancelled: no answer to count
                self._record(scope, status, time.perf_counter() - started)
            request_id.reset(token)

    def _record(self, scope, status: int, seconds: float) -> None:
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        self.metrics.answered(route, status, seconds)
        ms = round(1000 * seconds, 2)
        level = logging.WARNING if status >= 500 else logging.INFO
        fields = {"route": route, "status": status, "ms": ms}
        access_log.log(level, "%s %s %d %.2f ms", scope["method"], scope["path"], status, ms, extra=fields)


async def _internal_error(send) -> None:
    body = json.dumps({"detail": "internal error; the server's log has it under this request's X-Request-ID"})
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": body.encode()})
