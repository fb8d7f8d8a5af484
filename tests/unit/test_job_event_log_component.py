"""Issue 38: the job event log as the stack declares it (a table of its own, TTL, encrypted, a stream of new images
that only the opt-in progress webhook reads, marked items only), as local mode makes it, and the least-privilege
grants on it: the worker appends (BatchWriteItem), the API queries, the progress webhook reads the stream."""

from __future__ import annotations

import json

import pytest

from components.job_event_log import JobEventLog, JobEventLogArgs
from fleetdev.pulumi_mocks import run_stack
from runtime.jobs.events import create_events_table
from tests.unit.component_harness import build, each, fleet

TABLE = "aws:dynamodb/table:Table"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
MAPPING = "aws:lambda/eventSourceMapping:EventSourceMapping"


@pytest.fixture(scope="module")
def declared():
    cfg = fleet()
    built = build(lambda: JobEventLog("job-events", JobEventLogArgs(stack=cfg.identity)), "table_name")
    return built.one(TABLE).inputs


def test_the_event_table_has_ttl_encryption_and_a_new_image_stream(declared):
    assert (declared["hashKey"], declared["rangeKey"]) == ("job_id", "cursor")
    assert declared["ttl"] == {"attributeName": "expires_at", "enabled": True}
    assert declared["serverSideEncryption"]["enabled"] is True
    # the opt-in progress webhook reads it; its mapping's filter passes marked items only (test below)
    assert declared["streamEnabled"] is True and declared["streamViewType"] == "NEW_IMAGE"


def test_local_mode_makes_the_declared_keys(declared, aws_clients):
    ddb = aws_clients("dynamodb")
    create_events_table(ddb, "events-shape")
    schema = ddb.describe_table(TableName="events-shape")["Table"]["KeySchema"]
    keys = {k["KeyType"]: k["AttributeName"] for k in schema}
    assert keys == {"HASH": declared["hashKey"], "RANGE": declared["rangeKey"]}


def _statements(rec, arn: str) -> dict[str, list[dict]]:
    """Per role policy name: the statements that name ``arn``."""
    out: dict[str, list[dict]] = {}
    for policy in each(rec, ROLE_POLICY):
        doc = policy.inputs["policy"]
        doc = json.loads(doc) if isinstance(doc, str) else doc
        hits = [s for s in doc["Statement"] if arn in json.dumps(s.get("Resource"))]
        if hits:
            out[policy.name] = hits
    return out


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_worker_may_only_append_and_the_api_only_query(stack):
    rec = run_stack(stack)
    table = next(t for t in rec.of_type(TABLE) if t.inputs["name"].endswith("-job-events"))
    grants = _statements(rec, table.outputs["arn"])
    actions = {name: sorted(a for s in stmts for a in (s["Action"] if isinstance(s["Action"], list)
                                                       else [s["Action"]])) for name, stmts in grants.items()}
    assert sorted(actions.values()) == [
        ["dynamodb:BatchWriteItem"],
        ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"],  # the progress webhook
        ["dynamodb:Query"]], actions
    # one mapping reads this table's stream: the progress webhook's, and only the items the worker marked
    # (so a progress write invokes nothing unless its job asked for progress webhooks, at a bounded rate)
    mappings = [m for m in each(rec, MAPPING) if table.outputs["arn"] in json.dumps(m.inputs)]
    assert [m.name for m in mappings] == ["events-webhook-progress-source"]
    pattern = json.loads(mappings[0].inputs["filterCriteria"]["filters"][0]["pattern"])
    assert pattern == {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"notify": {"S": ["progress"]}}}}
