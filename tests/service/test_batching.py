"""The micro-batcher: requests that wait together run as one batch, each gets its own answer,
sizes are never mixed, a full queue refuses at once, and a failing batch fails its requests."""

import threading
import time

import numpy as np
import pytest

from steelseg.service.batching import MicroBatcher, QueueFullError


class Gated:
    """run(images) -> images * 2, recording batch sizes; the first call waits for ``release``
    so that the test can queue requests behind it."""

    def __init__(self):
        self.release = threading.Event()
        self.started = threading.Event()
        self.batches: list[list[int]] = []

    def __call__(self, images):
        self.started.set()
        self.release.wait(10)
        self.batches.append([int(image[0, 0]) for image in images])
        return images.astype(np.int32) * 2


def image(value: int, shape=(4, 6)) -> np.ndarray:
    return np.full(shape, value, np.uint8)


def test_waiting_requests_share_batches_of_at_most_max_batch():
    run = Gated()
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0, max_queue=16)
    first = batcher.submit(image(1))
    assert run.started.wait(5)  # the worker runs [1] and waits in it
    later = [batcher.submit(image(v)) for v in range(2, 7)]  # 5 requests queue meanwhile
    run.release.set()
    results = [f.result(5) for f in [first, *later]]
    batcher.close()
    assert run.batches == [[1], [2, 3, 4, 5], [6]]
    for value, result in zip(range(1, 7), results):
        np.testing.assert_array_equal(result, np.full((4, 6), 2 * value))


def test_images_of_another_size_wait_for_their_own_batch_in_order():
    run = Gated()
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0, max_queue=16)
    first = batcher.submit(image(1))
    assert run.started.wait(5)
    b = batcher.submit(image(2))
    c = batcher.submit(image(3, (5, 5)))
    d = batcher.submit(image(4))
    e = batcher.submit(image(5, (5, 5)))
    run.release.set()
    for future, value, shape in [(first, 1, (4, 6)), (b, 2, (4, 6)), (c, 3, (5, 5)), (d, 4, (4, 6)), (e, 5, (5, 5))]:
        np.testing.assert_array_equal(future.result(5), np.full(shape, 2 * value))
    batcher.close()
    assert run.batches == [[1], [2, 4], [3, 5]]


def test_a_full_queue_refuses_at_once():
    run = Gated()
    batcher = MicroBatcher(run, max_batch=1, max_wait_ms=0, max_queue=2)
    running = batcher.submit(image(1))
    assert run.started.wait(5)
    queued = [batcher.submit(image(2)), batcher.submit(image(3))]
    with pytest.raises(QueueFullError, match="2 requests are already waiting"):
        batcher.submit(image(4))
    assert batcher.waiting == 2
    run.release.set()
    assert [int(f.result(5)[0, 0]) for f in [running, *queued]] == [2, 4, 6]
    batcher.close()


def test_an_error_in_a_batch_reaches_each_of_its_requests_and_the_worker_goes_on():
    calls = []

    def run(images):
        calls.append(len(images))
        if len(calls) == 1:
            raise ValueError("network failed")
        return images

    batcher = MicroBatcher(run, max_batch=2, max_wait_ms=200, max_queue=8)
    failing = [batcher.submit(image(1)), batcher.submit(image(2))]
    for future in failing:
        with pytest.raises(ValueError, match="network failed"):
            future.result(5)
    np.testing.assert_array_equal(batcher.submit(image(3)).result(5), image(3))
    batcher.close()


def test_a_batch_waits_max_wait_for_company():
    run = Gated()
    run.release.set()
    batcher = MicroBatcher(run, max_batch=3, max_wait_ms=300, max_queue=8)
    futures = [batcher.submit(image(v)) for v in (1, 2, 3)]  # all within the first one's wait
    for f in futures:
        f.result(5)
    batcher.close()
    assert run.batches == [[1, 2, 3]]


@pytest.mark.parametrize("options", [{"max_batch": 0}, {"max_queue": 0}, {"max_wait_ms": -1}])
def test_bad_settings_are_refused(options):
    with pytest.raises(ValueError):
        MicroBatcher(lambda x: x, **options)


def test_the_running_batchs_age_liveness_and_on_batch_hook():
    run, sizes = Gated(), []
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=0, max_queue=8, on_batch=sizes.append)
    assert batcher.alive and batcher.running_for() == 0
    first = batcher.submit(image(1))
    assert run.started.wait(5)
    rest = [batcher.submit(image(v)) for v in (2, 3)]
    time.sleep(0.3)
    assert 0.3 <= batcher.running_for() < 5  # the gated batch is still running
    run.release.set()
    for future in [first, *rest]:
        future.result(5)
    assert batcher.running_for() == 0 and sizes == [1, 2]
    batcher.close()
    assert not batcher.alive
