"""Micro-batching: concurrent requests share the networks' batches.

A network runs a batch of 4 images in far less than 4 times the time of one, so requests that
arrive together are stacked and run as one batch. One worker thread owns the networks (the
event loop never waits on them); requests wait in a bounded queue, and a full queue is refused
at once (the service answers 503) instead of growing without limit under load.

The worker takes the first waiting image, then waits at most ``max_wait_ms`` for more of the
same size, up to ``max_batch``; an image of another size waits for the next batch. Whether the
worker is alive and how long its batch has run are public, for a readiness check: a backend that
hangs blocks the worker, and only its age shows it.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from steelseg.errors import SteelsegError


class QueueFullError(SteelsegError, RuntimeError):
    """More requests are waiting than the queue holds."""


@dataclass
class _Job:
    image: np.ndarray
    future: Future = field(default_factory=Future)


class MicroBatcher:
    """``submit(image)`` -> a Future of ``run(images[None])[0]``, computed in batches.

    ``run``: (N, H, W) uint8 -> something indexable by image (``core.outputs.Outputs``);
    ``on_batch(N)`` hears of each batch that ``run`` answered (the service's metrics)."""

    def __init__(
        self,
        run: Callable[[np.ndarray], object],
        max_batch: int = 4,
        max_wait_ms: float = 5.0,
        max_queue: int = 64,
        on_batch: Callable[[int], None] | None = None,
    ):
        if max_batch < 1 or max_queue < 1 or max_wait_ms < 0:
            raise ValueError("max_batch and max_queue must be >= 1, max_wait_ms >= 0")
        self.run = run
        self.on_batch = on_batch
        self._batch_started: float | None = None  # time.monotonic() when the running batch began
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.jobs: queue.Queue[_Job | None] = queue.Queue(max_queue)
        self.batches = 0  # counters for /health and the benchmark
        self.images = 0
        self._carry: list[_Job] = []  # taken from the queue, of another size than the batch
        self._worker = threading.Thread(target=self._loop, name="steelseg-batcher", daemon=True)
        self._worker.start()

    def submit(self, image: np.ndarray) -> Future:
        job = _Job(image)
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFullError(f"{self.jobs.maxsize} requests are already waiting; try again shortly") from None
        return job.future

    @property
    def waiting(self) -> int:
        return self.jobs.qsize() + len(self._carry)

    @property
    def alive(self) -> bool:
        """Whether the worker thread runs (False after ``close`` or if it died)."""
        return self._worker.is_alive()

    def running_for(self) -> float:
        """Seconds the batch now running has taken so far; 0 when none runs."""
        started = self._batch_started  # one read: the worker may clear it meanwhile
        return 0.0 if started is None else time.monotonic() - started

    def close(self) -> None:
        """Finish the waiting jobs, then stop the worker."""
        self.jobs.put(None)
        self._worker.join()

    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            self._run(batch)

    def _next_batch(self) -> list[_Job] | None:
        first = self._carry.pop(0) if self._carry else self.jobs.get()
        if first is None:
            return None
        batch = [first]
        shape = first.image.shape
        # Same-size jobs already carried over join first, in arrival order.
        for job in [j for j in self._carry if j.image.shape == shape][: self.max_batch - 1]:
            self._carry.remove(job)
            batch.append(job)
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            try:
                job = self.jobs.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break
            if job is None:  # close(): run this batch, then stop
                self.jobs.put(None)
                break
            if job.image.shape == shape:
                batch.append(job)
            else:
                self._carry.append(job)
        return batch

    def _run(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if not live:
            return
        self._batch_started = time.monotonic()
        try:
            outputs = self.run(np.stack([job.image for job in live]))
        except BaseException as err:  # delivered to every request of the batch
            for job in live:
                job.future.set_exception(err)
            return
        finally:
            self._batch_started = None
        self.batches += 1
        self.images += len(live)
        if self.on_batch is not None:
            self.on_batch(len(live))
        for i, job in enumerate(live):
            job.future.set_result(outputs[i])
