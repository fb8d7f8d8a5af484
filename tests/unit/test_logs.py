"""The JSON log formatter: every record is one valid JSON object, whatever the message and extras hold."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.worker.logs import JsonFormatter, configure

CORE = ("time", "level", "logger", "component")  # "message" cannot be an extra (logging refuses it)
_RESERVED = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
EXTRA_KEYS = st.one_of(st.sampled_from(CORE), st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12)
                       ).filter(lambda k: k not in _RESERVED and not k.startswith("_"))
VALUES = st.one_of(st.text(), st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                   st.lists(st.text(), max_size=3), st.binary(max_size=8))


@settings(max_examples=200, deadline=None)
@given(message=st.text(), args=st.lists(st.text(), max_size=2), extras=st.dictionaries(EXTRA_KEYS, VALUES, max_size=4))
def test_every_record_is_one_json_object_that_keeps_message_and_extras(message, args, extras):
    fmt = message.replace("%", "%%") + " %s" * len(args)
    record = logging.LogRecord("genai.test", logging.WARNING, __file__, 1, fmt, tuple(args), None)
    record.__dict__.update(extras)
    line = JsonFormatter({"component": "agent"}).format(record)
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["message"] == record.getMessage() and doc["level"] == "WARNING" and doc["component"] == "agent"
    for key, value in extras.items():
        assert doc[f"extra_{key}" if key in CORE else key] == (str(value) if isinstance(value, bytes) else value)


def test_exceptions_are_kept_in_the_same_line():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("genai.test.exc")
    logger.addHandler(handler)
    try:
        raise ValueError('bad "quoted" value\nsecond line')
    except ValueError:
        logger.exception("failed: %s", 'a "quote"')
    finally:
        logger.removeHandler(handler)
    (line,) = stream.getvalue().splitlines()
    doc = json.loads(line)
    assert doc["message"] == 'failed: a "quote"' and 'bad "quoted" value' in doc["exception"]


def test_the_local_api_server_logs_json_lines_too(tmp_path):
    """It used a %-format "JSON" line; a message with a quote made it invalid. Its first line, parsed."""
    env = {"PATH": "/usr/bin:/bin", "GENAI_JOB_TABLE": 'jobs "quoted"', "GENAI_QUEUE_URL": "http://127.0.0.1:1/q",
           "GENAI_AUTH_MODE": "none", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "x",
           "AWS_SECRET_ACCESS_KEY": "x"}
    proc = subprocess.Popen([sys.executable, "-m", "fleetdev.local_server", "--port", "0"], env=env, cwd=tmp_path,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()
    finally:
        proc.kill()
        proc.wait(timeout=30)
    doc = json.loads(line)
    assert doc["component"] == "local-api" and doc["message"].startswith("local API on http://127.0.0.1:")


def test_configure_replaces_the_root_handlers():
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        configure("DEBUG")
        assert len(root.handlers) == 1 and isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:], _ = before[0], root.setLevel(before[1])
