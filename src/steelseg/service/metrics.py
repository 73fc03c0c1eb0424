"""The service's Prometheus metrics, in a registry of its own.

One registry per app, not prometheus_client's global one: a process that builds several apps
(the tests, or one server per model) would otherwise register the same names twice and fail.
The exposition format is prometheus_client's; nothing here writes it by hand.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

PREFIX = "steelseg"


class ServiceMetrics:
    """Requests by route and status, their latency, errors by status, the batcher's queue
    depth (read at each scrape from ``queue_depth()``), batch sizes, images predicted, and the
    model's load time when known."""

    def __init__(self, queue_depth: Callable[[], float], max_batch: int, load_seconds: float | None = None):
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(f"{PREFIX}_requests", "HTTP requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            f"{PREFIX}_request_seconds", "time from a request's arrival to its answer", ["route"], registry=r
        )
        self.errors = Counter(f"{PREFIX}_errors", "answers with a status of 400 or more", ["status"], registry=r)
        Gauge(f"{PREFIX}_queue_depth", "requests waiting for the networks", registry=r).set_function(queue_depth)
        self.batch_size = Histogram(
            f"{PREFIX}_batch_size", "images per batch run by the networks", buckets=_size_buckets(max_batch), registry=r
        )
        self.images = Counter(f"{PREFIX}_images_predicted", "images the networks have predicted", registry=r)
        if load_seconds is not None:  # unknown (an app built around a loaded model): no sample, rather than a 0
            load = Gauge(f"{PREFIX}_model_load_seconds", "seconds the model took to load at start", registry=r)
            load.set(load_seconds)

    def answered(self, route: str, status: int, seconds: float) -> None:
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)
        if status >= 400:
            self.errors.labels(str(status)).inc()

    def batch_done(self, size: int) -> None:
        self.batch_size.observe(size)
        self.images.inc(size)

    def exposition(self) -> tuple[bytes, str]:
        """(the text a scraper reads, its content type)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def _size_buckets(max_batch: int) -> list[float]:
    # powers of two up to the largest batch, and that batch itself: few buckets even for large ones
    sizes = {2**i for i in range(max_batch.bit_length()) if 2**i <= max_batch} | {max_batch}
    return sorted(float(size) for size in sizes)
