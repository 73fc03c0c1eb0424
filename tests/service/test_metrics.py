"""GET /metrics against requests the test made itself: the counts, statuses, queue depth and
batch sizes it reads back (through prometheus_client's own parser of the text format) are the
ones it caused, and two apps in one process keep theirs apart."""

import threading

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from steelseg.service.app import ServiceSettings, create_app
from steelseg.service.metrics import _size_buckets

from .conftest import ThresholdNetwork, make_predictor, planted, png_bytes

UPLOAD = {"file": ("a.png", png_bytes(planted()[0]), "image/png")}


def scrape(client: TestClient) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of one scrape."""
    response = client.get("/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def test_requests_errors_images_and_load_time_are_the_ones_made():
    app = create_app(make_predictor(), ServiceSettings(api_key="k"), load_seconds=2.5)
    c = TestClient(app)
    key = {"X-API-Key": "k"}
    for _ in range(3):
        assert c.post("/predict", files=UPLOAD, headers=key).status_code == 200
    assert c.post("/predict", files={"file": ("a.txt", b"hi", "text/plain")}, headers=key).status_code == 415
    assert c.post("/predict", files=UPLOAD).status_code == 401  # refused by the guard: counted all the same
    assert c.get("/wp-login.php").status_code == 404
    assert c.get("/nothing/here").status_code == 404
    seen = scrape(c)  # no key: scrapers have none
    assert seen[("steelseg_requests_total", (("route", "/predict"), ("status", "200")))] == 3
    assert seen[("steelseg_requests_total", (("route", "/predict"), ("status", "415")))] == 1
    assert seen[("steelseg_requests_total", (("route", "/predict"), ("status", "401")))] == 1
    assert seen[("steelseg_requests_total", (("route", "other"), ("status", "404")))] == 2  # unknown paths: one label
    assert seen[("steelseg_errors_total", (("status", "401"),))] == 1
    assert seen[("steelseg_errors_total", (("status", "404"),))] == 2
    assert seen[("steelseg_errors_total", (("status", "415"),))] == 1
    assert ("steelseg_errors_total", (("status", "200"),)) not in seen
    assert seen[("steelseg_request_seconds_count", (("route", "/predict"),))] == 5
    assert seen[("steelseg_images_predicted_total", ())] == 3
    assert seen[("steelseg_batch_size_count", ())] == 3  # one request at a time: batches of one
    assert seen[("steelseg_model_load_seconds", ())] == 2.5
    assert seen[("steelseg_queue_depth", ())] == 0


class GatedNetwork(ThresholdNetwork):
    def __init__(self):
        super().__init__()
        self.release, self.entered = threading.Event(), threading.Event()

    def __call__(self, x):
        self.entered.set()
        self.release.wait(30)
        return super().__call__(x)


def test_queue_depth_and_batch_sizes_follow_the_batcher():
    predictor = make_predictor()
    network = predictor.members[0].backend = GatedNetwork()
    app = create_app(predictor, ServiceSettings(max_batch=4, max_wait_ms=0))
    c = TestClient(app)
    image = planted()[0]
    try:
        running = app.state.batcher.submit(image)
        assert network.entered.wait(10)  # the first batch (one image) runs and holds the worker
        waiting = [app.state.batcher.submit(image) for _ in range(3)]
        assert scrape(c)[("steelseg_queue_depth", ())] == 3
    finally:
        network.release.set()
    for future in [running, *waiting]:
        future.result(10)
    seen = scrape(c)
    assert network.batch_sizes == [1, 3]
    assert seen[("steelseg_queue_depth", ())] == 0
    assert seen[("steelseg_batch_size_count", ())] == 2 and seen[("steelseg_batch_size_sum", ())] == 4
    assert seen[("steelseg_batch_size_bucket", (("le", "1.0"),))] == 1  # the batch of one
    assert seen[("steelseg_batch_size_bucket", (("le", "2.0"),))] == 1
    assert seen[("steelseg_batch_size_bucket", (("le", "4.0"),))] == 2  # and the batch of three
    assert seen[("steelseg_images_predicted_total", ())] == 4


def test_two_apps_in_one_process_keep_their_own_metrics():
    first, second = (TestClient(create_app(make_predictor())) for _ in range(2))  # the global registry would refuse
    assert first.post("/predict", files=UPLOAD).status_code == 200
    assert scrape(first)[("steelseg_images_predicted_total", ())] == 1
    assert scrape(second)[("steelseg_images_predicted_total", ())] == 0
    assert ("steelseg_model_load_seconds", ()) not in scrape(second)  # no load time given: none, rather than 0


@pytest.mark.parametrize(
    ("max_batch", "buckets"),
    [(1, [1]), (2, [1, 2]), (4, [1, 2, 4]), (6, [1, 2, 4, 6]), (8, [1, 2, 4, 8]), (20, [1, 2, 4, 8, 16, 20])],
)
def test_batch_size_buckets_are_powers_of_two_and_the_largest_batch(max_batch, buckets):
    assert _size_buckets(max_batch) == buckets
