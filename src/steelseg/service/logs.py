"""The service's log lines, as text or as one JSON object per line, and the request id they carry.

The request id lives in a context variable set by ``observe.Observe`` for the request's task; it
reaches code run in the thread pool too (Starlette copies the context), so any line logged while a
request is answered names it. Standard ``logging`` only: uvicorn's own loggers go through the same
handler (``log_config``), so a JSON deployment writes nothing that is not JSON.
"""

from __future__ import annotations

import contextvars
import json
import logging
from datetime import UTC, datetime

LOG_FORMATS = ("text", "json")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("steelseg_request_id", default=None)

# fields a log call may add with ``extra=``; the access line of each request has them all
REQUEST_FIELDS = ("route", "status", "ms")


class RequestIdFilter(logging.Filter):
    """Gives every record ``request_id``: the one being answered, else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, request_id, and
    route, status and ms where the record has them; a traceback as one string field."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({field: getattr(record, field) for field in REQUEST_FIELDS if hasattr(record, field)})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message [request id]``."""

    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = getattr(record, "request_id", None)
        return f"{text} [{rid}]" if rid else text


def json_line(message: str, level: str = "INFO") -> str:
    """``message`` as the JSON formatter writes it, for lines printed before logging is set up."""
    record = logging.LogRecord("steelseg.service", getattr(logging, level), __file__, 0, message, None, None)
    record.request_id = None
    return JsonFormatter().format(record)


def log_config(log_format: str, level: str = "info") -> dict:
    """A ``logging.config.dictConfig`` for uvicorn (its ``log_config``): uvicorn's loggers and
    steelseg's through one handler on stderr, formatted as ``log_format`` (text or json)."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r}: choose from {', '.join(LOG_FORMATS)}")
    formatter = JsonFormatter if log_format == "json" else TextFormatter
    logger = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": RequestIdFilter}},
        "formatters": {"default": {"()": formatter}},
        "handlers": {
            "default": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "loggers": {name: dict(logger) for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "steelseg")},
    }
