"""The log formats: a JSON line holds the record's own time, level, message and request id, a
traceback stays on its line, and ``log_config`` (what ``serve`` gives uvicorn) makes uvicorn's
loggers and steelseg's write those lines, checked in a fresh process."""

import json
import logging
import subprocess
import sys
import textwrap
from datetime import datetime

import pytest

from steelseg.service.logs import JsonFormatter, RequestIdFilter, TextFormatter, json_line, log_config, request_id


def record(message: str = "hello %s", args=("world",), **extra) -> logging.LogRecord:
    made = logging.LogRecord("steelseg.test", logging.WARNING, __file__, 1, message, args, None)
    made.created = 1_800_000_000.25  # 2027-01-15T08:00:00.250 UTC
    made.__dict__.update(extra)
    return made


def test_a_json_line_holds_the_records_fields():
    line = json.loads(JsonFormatter().format(record(request_id="r-1", route="/predict", status=200, ms=12.5)))
    assert line == {
        "time": "2027-01-15T08:00:00.250+00:00",
        "level": "WARNING",
        "logger": "steelseg.test",
        "message": "hello world",
        "request_id": "r-1",
        "route": "/predict",
        "status": 200,
        "ms": 12.5,
    }
    assert datetime.fromisoformat(line["time"]).timestamp() == 1_800_000_000.25


def test_a_traceback_stays_inside_its_json_line():
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        failed = record("failed", (), exc_info=sys.exc_info())
    text = JsonFormatter().format(failed)
    assert "\n" not in text
    line = json.loads(text)
    assert line["exception"].startswith("Traceback") and "ValueError: bad\nvalue" in line["exception"]
    assert line["request_id"] is None and "route" not in line


def test_the_filter_gives_each_record_the_request_being_answered():
    outside = record()
    RequestIdFilter().filter(outside)
    token = request_id.set("abc")
    try:
        inside = record()
        RequestIdFilter().filter(inside)
    finally:
        request_id.reset(token)
    assert outside.request_id is None and inside.request_id == "abc"
    assert TextFormatter().format(inside).endswith("WARNING steelseg.test: hello world [abc]")
    assert TextFormatter().format(outside).endswith("WARNING steelseg.test: hello world")


def test_json_line_is_a_line_of_the_json_format():
    line = json.loads(json_line("serving on http://127.0.0.1:8000"))
    assert line["message"] == "serving on http://127.0.0.1:8000" and line["level"] == "INFO"
    assert set(line) == {"time", "level", "logger", "message", "request_id"}


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_log_config_formats_uvicorns_and_steelsegs_lines(log_format):
    script = textwrap.dedent(f"""
        import logging, logging.config
        from steelseg.service.logs import log_config
        logging.config.dictConfig(log_config({log_format!r}, "info"))
        logging.getLogger("uvicorn.error").info("Uvicorn running")
        logging.getLogger("steelseg.access").info("GET /health 200", extra={{"route": "/health", "status": 200}})
        logging.getLogger("steelseg.service").debug("under the level")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines  # the debug line is under the level
    if log_format == "json":
        parsed = [json.loads(line) for line in lines]
        assert [(p["logger"], p["message"]) for p in parsed] == [
            ("uvicorn.error", "Uvicorn running"),
            ("steelseg.access", "GET /health 200"),
        ]
        assert parsed[1]["route"] == "/health" and parsed[1]["status"] == 200
    else:
        assert lines[0].endswith("INFO uvicorn.error: Uvicorn running") and not lines[0].startswith("{")


def test_an_unknown_log_format_is_refused():
    with pytest.raises(ValueError, match="choose from text, json"):
        log_config("xml")
