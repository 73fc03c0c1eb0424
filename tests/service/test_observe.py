"""Request ids and access lines: every answer, refusals and crashes included, carries the
request's id in X-Request-ID, and the JSON log lines written while answering it name that id,
its route, status and time."""

import io
import json
import logging

import pytest
from fastapi.testclient import TestClient

from steelseg.service.app import ServiceSettings, create_app
from steelseg.service.logs import JsonFormatter, RequestIdFilter
from steelseg.service.observe import new_request_id

from .conftest import ThresholdNetwork, make_predictor, planted, png_bytes

UPLOAD = {"file": ("a.png", png_bytes(planted()[0]), "image/png")}
PNG = {"content-type": "image/png"}


@pytest.fixture
def json_log():
    """The lines that the ``steelseg`` loggers write at INFO, through the service's JSON formatter."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("steelseg")
    level, propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the test's own capture would print them again
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123", True),
        ("0f8e20b.trace:7_A", True),
        ("x" * 128, True),
        ("x" * 129, False),  # too long to log
        ("two words", False),
        ('"><script>', False),
        ("", False),
        (None, False),
    ],
)
def test_a_sane_client_id_is_kept_and_anything_else_replaced(sent, kept):
    rid = new_request_id(sent.encode() if sent is not None else None)
    if kept:
        assert rid == sent
    else:
        assert len(rid) == 32 and int(rid, 16) >= 0  # uuid4 hex


class ExplodingNetwork(ThresholdNetwork):
    def __call__(self, x):
        raise RuntimeError("the backend fell over")


def exploding_predictor():
    predictor = make_predictor()
    predictor.members[0].backend = ExplodingNetwork()
    return predictor


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "settings", "status"),
    [
        ("get", "/health", {}, {}, 200),
        ("post", "/predict", {"files": UPLOAD}, {}, 200),
        ("post", "/predict", {"files": UPLOAD}, {"api_key": "k"}, 401),  # refused by the guard, before the app
        ("post", "/predict", {"content": b"x" * 2000, "headers": PNG}, {"max_upload_mb": 1e-3}, 413),
        ("post", "/predict", {"files": {"file": ("a.txt", b"hi", "text/plain")}}, {}, 415),
        ("get", "/no/such/page", {}, {}, 404),
        ("put", "/health", {}, {}, 405),
    ],
)
def test_every_answer_echoes_the_request_id(json_log, method, path, kwargs, settings, status):
    c = TestClient(create_app(make_predictor(), ServiceSettings(**settings)))
    headers = {**kwargs.pop("headers", {}), "X-Request-ID": "req-42"}
    response = getattr(c, method)(path, headers=headers, **kwargs)
    assert response.status_code == status and response.headers["x-request-id"] == "req-42"
    access = [line for line in json_log() if line["logger"] == "steelseg.access"]
    assert len(access) == 1
    line = access[0]
    assert line["request_id"] == "req-42" and line["status"] == status and line["level"] in ("INFO", "WARNING")
    assert line["route"] == (path if status != 404 else "other") and line["ms"] > 0
    assert line["message"] == f"{method.upper()} {path} {status} {line['ms']:.2f} ms"


def test_a_crash_is_a_500_with_the_id_and_its_traceback_logged_under_it(json_log):
    c = TestClient(create_app(exploding_predictor()))
    response = c.post("/predict", files=UPLOAD, headers={"X-Request-ID": "crash-1"})
    assert response.status_code == 500 and response.headers["x-request-id"] == "crash-1"
    assert "X-Request-ID" in response.json()["detail"] and "fell over" not in response.text  # no internals leak
    lines = json_log()
    error = next(line for line in lines if line["logger"] == "steelseg.service")
    assert error["request_id"] == "crash-1" and error["level"] == "ERROR"
    assert "RuntimeError: the backend fell over" in error["exception"]
    access = next(line for line in lines if line["logger"] == "steelseg.access")
    assert access["status"] == 500 and access["request_id"] == "crash-1" and access["level"] == "WARNING"
    assert c.get("/health").status_code == 200


def test_requests_without_an_id_get_a_new_one_each():
    c = TestClient(create_app(make_predictor()))
    ids = {c.get("/health").headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3 and all(len(rid) == 32 for rid in ids)
