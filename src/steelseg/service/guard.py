"""What is refused before a request's body is read: a missing or wrong API key (401, with a
``WWW-Authenticate`` header naming the key's header) and a declared Content-Length over the
upload limit (413); and a body that does not arrive in time (408). Pure ASGI, outside
FastAPI's routing, because FastAPI reads and parses a multipart body before any dependency of
the endpoint runs: a key checked there would let an unauthorised client make the server receive
its whole upload first (the app declares the key to OpenAPI as well, for the docs page, but
checks it here). A body that streams in without a length is cut by FastAPI's own
``max_body_size``."""

from __future__ import annotations

import asyncio
import hmac
import json

from starlette.exceptions import HTTPException

API_KEY_HEADER = "x-api-key"
# No standard scheme exists for API keys; this one names the header a client must send.
AUTHENTICATE = 'APIKey header="X-API-Key"'


class Guard:
    """ASGI middleware: requests to ``protected`` paths without ``api_key`` in the
    ``X-API-Key`` header get 401, and requests to ``limited`` paths that declare more than
    ``max_bytes`` get 413; neither goes further."""

    def __init__(
        self,
        app,
        api_key: str | None,
        protected: set[str],
        limited: set[str],
        max_bytes: int,
        body_timeout: float = 30.0,
    ):
        self.app = app
        self.api_key = api_key.encode() if api_key else None
        self.protected = protected
        self.limited = limited
        self.max_bytes = max_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if self.api_key is not None and scope["path"] in self.protected:
                if not hmac.compare_digest(headers.get(API_KEY_HEADER.encode(), b""), self.api_key):
                    detail = f"missing or wrong API key: send it in the {API_KEY_HEADER} header"
                    return await _refuse(send, 401, detail, [(b"www-authenticate", AUTHENTICATE.encode())])
            length = headers.get(b"content-length", b"0")
            if scope["path"] in self.limited:
                if not length.isdigit() or int(length) > self.max_bytes:
                    return await _refuse(send, 413, f"upload larger than the limit of {self.max_bytes / 1e6:g} MB")
                receive = self._deadline(receive)
        return await self.app(scope, receive, send)

    def _deadline(self, receive):
        """``receive`` whose body must be complete within ``body_timeout`` seconds (a slow
        client holds a connection, not a thread, but must not hold it forever); 408 after."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout
        done = False

        async def timed_receive():
            nonlocal done
            if done:  # the body is in: waiting for a disconnect has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.001))
            except TimeoutError:
                raise HTTPException(408, f"the upload did not arrive within {self.body_timeout:g} s") from None
            done = message["type"] != "http.request" or not message.get("more_body", False)
            return message

        return timed_receive


async def _refuse(send, status: int, detail: str, headers: list[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
