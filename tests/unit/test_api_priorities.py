"""Issue 44, point 3 at the door: ``priority: high | normal | low`` within the key's ceiling (``max_priority`` on
the key record, default normal): an unknown class is a 422 naming ``priority``, a class above the ceiling a 403
naming the ceiling, before anything is written; the ceiling travels from the key record through the stand-alone
authorizer's context to the handler, and ``genai-stack api-key --max-priority`` sets it."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import KeyRecord, SsmKeyStore, StaticKeyStore, generate_key, parse_key
from runtime.api.authorizer import authorize
from runtime.api.handler import _authorizer_principal
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue
from tools import stack_setup

PLAIN_KEY, PLAIN = generate_key("free")
HIGH_KEY, HIGH = generate_key("paid", max_priority="high")
JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "a cat", "width": 64, "height": 64}}


@pytest.fixture
def app(aws_clients, job_table):
    keys = StaticKeyStore({PLAIN.key_id: PLAIN, HIGH.key_id: HIGH})
    return ApiApp(JobStore(job_table, aws_clients("dynamodb")), InMemoryQueue(), ApiOptions(auth_mode="api-key"),
                  keys=keys)


def _post(app: ApiApp, key: str, body: dict):
    return app.handle(Request("POST", "/v1/jobs", body=json.dumps(body).encode(), headers={
        "authorization": f"Bearer {key}", "content-type": "application/json"}))


def _count(app: ApiApp, key: str) -> int:
    resp = app.handle(Request("GET", "/v1/jobs", headers={"authorization": f"Bearer {key}"}))
    return len(resp.body.get("jobs", resp.body.get("data")))


@pytest.mark.parametrize("value", ["urgent", "HIGH", 1, ["high"]])
def test_an_unknown_priority_is_a_422_naming_the_field(app, value):
    resp = _post(app, HIGH_KEY, {**JOB, "priority": value})
    assert resp.status == 422 and [e["field"] for e in resp.body["errors"]] == ["priority"], resp.body


def test_a_priority_above_the_keys_ceiling_is_a_403_naming_it_and_nothing_is_written(app):
    resp = _post(app, PLAIN_KEY, {**JOB, "priority": "high"})
    assert resp.status == 403 and resp.body["max_priority"] == "normal", resp.body
    assert "max_priority=normal" in resp.body["detail"] and _count(app, PLAIN_KEY) == 0
    for priority, key in (("normal", PLAIN_KEY), ("low", PLAIN_KEY), ("high", HIGH_KEY)):
        created = _post(app, key, {**JOB, "priority": priority})
        assert created.status == 202 and created.body["priority"] == priority, created.body
    assert _post(app, PLAIN_KEY, JOB).body["priority"] == "normal"  # the default class


def test_the_key_record_keeps_the_ceiling_as_one_optional_field():
    plain = json.loads(PLAIN.to_json())
    assert plain.get("max_priority") is None  # written as null, as every optional field unset (issue 43's records)
    before = {k: v for k, v in plain.items() if k != "max_priority"}  # a record from before the field
    assert KeyRecord.from_json("k", json.dumps(before)).max_priority is None  # reads as before: no ceiling
    assert KeyRecord.from_json("k", HIGH.to_json()).max_priority == "high"
    assert KeyRecord.from_json("k", PLAIN.to_json()).max_priority is None


def test_the_ceiling_travels_through_the_authorizer_context():
    keys = StaticKeyStore({HIGH.key_id: HIGH, PLAIN.key_id: PLAIN})
    for key, ceiling in ((HIGH_KEY, "high"), (PLAIN_KEY, "normal")):
        verdict = authorize({"headers": {"authorization": f"Bearer {key}"}}, keys)
        assert verdict["isAuthorized"] and verdict["context"]["max_priority"] == ceiling
        _, principal = _authorizer_principal({"requestContext": {"authorizer": {"lambda": verdict["context"]}}})
        assert principal.max_priority == ceiling
    _, old = _authorizer_principal({"requestContext": {"authorizer": {"lambda": {"key_id": "k"}}}})
    assert old.max_priority == "normal"  # a context from before the field: the default


def test_genai_stack_api_key_sets_the_ceiling(monkeypatch):
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    assert stack_setup.parse_args(["api-key", "--stack", "prod", "--name", "a", "--max-priority", "high"]) \
        .max_priority == "high"
    with pytest.raises(SystemExit):
        stack_setup.parse_args(["api-key", "--stack", "prod", "--name", "a", "--max-priority", "urgent"])
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        out = stack_setup.mint_api_key(ssm, stack_setup.stack_settings("prod"), "paid", max_priority="high")
        record = SsmKeyStore(ssm, "/genai-fleet/prod/api-keys").lookup(parse_key(out["key"]))
        assert record.max_priority == "high"
