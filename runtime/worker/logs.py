"""JSON log lines for the agent (configured by the entry point only; library code just logs)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, exception and any ``extra`` fields.

    ``json.dumps`` does the quoting, so any message or value yields one valid line; an ``extra`` named
    like a core field (``level``, ``message``...) is kept as ``extra_<name>`` (tests/unit/test_logs.py).
    """

    def __init__(self, static: dict[str, str] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.static,
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[f"extra_{key}" if key in doc else key] = value  # an extra never hides time, level, ...
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


def configure(level: str = "INFO", **static: str) -> None:
    """Send every log record to stderr as JSON (stdout carries EMF records in local mode)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("botocore", "urllib3", "httpx", "httpcore", "aws_embedded_metrics"):
        logging.getLogger(noisy).setLevel("WARNING")
