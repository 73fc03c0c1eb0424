"""The service's limits and API key, plain values: built by ``steelseg serve`` without importing
the web framework, read by ``app.create_app``."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from steelseg.files.images import MAX_PIXELS


@dataclass(frozen=True)
class ServiceSettings:
    api_key: str | None = None  # None: no key needed
    max_upload_mb: float = 20.0
    max_pixels: int = MAX_PIXELS  # images' own cap (four 256 x 16,000 strips); serve applies STEELSEG_MAX_PIXELS
    max_batch: int = 4
    max_wait_ms: float = 5.0
    max_queue: int = 64
    body_timeout_s: float = 30.0  # a request's body must arrive within this (408)
    header_timeout_s: float = 10.0  # and its headers within this (the connection is closed; ``protocol``)
    # the model must answer a request within this (504), and a batch running longer makes /ready 503
    request_timeout_s: float = 60.0

    def public(self) -> dict:
        settings = asdict(self)
        settings["api_key"] = self.api_key is not None  # whether one is needed, never the key
        return settings
