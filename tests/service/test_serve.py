"""``serve()``: no service open to the network without a key unless asked for, said at start;
the model's load time reaches /metrics; uvicorn gets the log format. The model load and
uvicorn are replaced by the planted predictor and a recorder, so nothing listens."""

import json
import time

import pytest
from fastapi.testclient import TestClient

import steelseg.hardware
from steelseg.inference.predictor import Predictor
from steelseg.service import serve as service
from steelseg.service.serve import ServiceError, check_auth, is_loopback

from .conftest import make_predictor

LOAD_SECONDS = 0.2


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.20", False),
        ("10.0.0.1", False),
        ("my-host.example", False),  # a name may resolve to any interface
        ("", False),
    ],
)
def test_loopback_is_localhost_127_and_1(host, loopback):
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("host", "key", "no_auth", "says"),
    [
        ("127.0.0.1", None, False, "without an API key (loopback only)"),
        ("::1", None, False, "without an API key (loopback only)"),
        ("0.0.0.0", "k", False, "with the API key from $STEELSEG_API_KEY"),
        ("0.0.0.0", None, True, "WITHOUT an API key (--no-auth)"),
        ("127.0.0.1", None, True, "WITHOUT an API key (--no-auth)"),
    ],
)
def test_how_the_service_runs_is_said(host, key, no_auth, says):
    assert check_auth(host, key, "STEELSEG_API_KEY", no_auth).startswith(says)


@pytest.mark.parametrize(
    ("host", "key", "variable", "no_auth", "says"),
    [
        ("0.0.0.0", None, "STEELSEG_API_KEY", False, "refusing to serve 0.0.0.0 without an API key: set $STEELSEG_"),
        ("192.168.1.20", None, "MY_KEY", False, "set $MY_KEY (or name another variable with --api-key-env), or pass"),
        ("my-host.example", None, None, False, "set $STEELSEG_API_KEY"),
        ("0.0.0.0", "k", "STEELSEG_API_KEY", True, "--no-auth given and an API key is set in $STEELSEG_API_KEY"),
    ],
)
def test_an_open_service_on_the_network_is_refused(host, key, variable, no_auth, says):
    with pytest.raises(ServiceError) as refused:
        check_auth(host, key, variable, no_auth)
    assert says in str(refused.value) and "\n" not in str(refused.value)
    assert "--no-auth" in str(refused.value)


@pytest.fixture
def started(monkeypatch):
    """serve() with the planted predictor for a model that takes LOAD_SECONDS to load, and a
    uvicorn.run that records its arguments: -> (the recording, the lines said, the load calls)."""
    import uvicorn

    run, said, loads = {}, [], []

    def load(cls, models, **options):
        loads.append(models)
        time.sleep(LOAD_SECONDS)
        return make_predictor()

    monkeypatch.setattr(Predictor, "load", classmethod(load))
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: run.update(app=app, **options))
    monkeypatch.setattr(steelseg.hardware, "keep_freed_memory", lambda: "")
    monkeypatch.delenv("STEELSEG_API_KEY", raising=False)
    return run, said, loads


def test_no_key_on_the_network_is_refused_before_the_model_loads(started):
    run, said, loads = started
    with pytest.raises(ServiceError, match="refusing to serve 0.0.0.0 without an API key"):
        service.serve(["model.onnx"], host="0.0.0.0", port=0, say=said.append)
    assert loads == [] and run == {} and said == []


def test_a_keyed_service_says_so_and_reports_its_load_time(started, monkeypatch):
    run, said, loads = started
    monkeypatch.setenv("STEELSEG_API_KEY", "k3y")
    service.serve(["model.onnx"], host="0.0.0.0", port=0, say=said.append)
    assert loads == [["model.onnx"]] and run["host"] == "0.0.0.0"
    assert "with the API key from $STEELSEG_API_KEY" in said[-1]
    client = TestClient(run["app"])
    assert client.get("/model").status_code == 401  # the key from the environment is in force
    load_line = next(
        line for line in client.get("/metrics").text.splitlines() if line.startswith("steelseg_model_load")
    )
    assert LOAD_SECONDS <= float(load_line.split()[1]) < LOAD_SECONDS + 5


def test_no_auth_serves_the_network_without_a_key_and_says_so(started):
    run, said, _ = started
    service.serve(["model.onnx"], host="0.0.0.0", port=0, no_auth=True, say=said.append)
    assert "WITHOUT an API key (--no-auth)" in said[-1]
    assert TestClient(run["app"]).get("/model").status_code == 200


def test_json_log_format_reaches_uvicorn_and_the_start_lines(started, capsys):
    run, _, _ = started
    service.serve(["model.onnx"], port=0, log_format="json", log_level="warning")
    start = json.loads(capsys.readouterr().out.strip().splitlines()[-1])  # say() by default: stdout, as JSON
    assert start["message"].startswith("serving fake threshold network") and "loopback only" in start["message"]
    assert run["access_log"] is False  # the service logs each request itself, with its id
    config = run["log_config"]
    assert config["formatters"]["default"]["()"].__name__ == "JsonFormatter"
    assert config["loggers"]["steelseg"]["level"] == "WARNING"  # applied in a fresh process by test_logs


def test_an_unknown_log_format_is_one_line(started):
    with pytest.raises(ServiceError, match="log format 'xml': choose from text, json"):
        service.serve(["model.onnx"], port=0, log_format="xml")
