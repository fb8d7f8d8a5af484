"""Issue 44, point 6: ``metadata`` labels on a job: bounded, returned on the job and in webhooks, and a filter of
``GET /v1/jobs`` (``metadata.<key>=<value>``), on moto's DynamoDB through the real app and store."""

from __future__ import annotations

import json

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import Principal
from runtime.jobs.errors import ValidationError
from runtime.jobs.schema import fingerprint, validate_job
from runtime.jobs.store import JobStore, new_record
from runtime.jobs.views import public_view
from runtime.queues.memory import InMemoryQueue

BASE = {"model": "m", "inputs": {"prompt": "x"}}


def _problems(metadata):
    with pytest.raises(ValidationError) as info:
        validate_job({**BASE, "metadata": metadata})
    return [(p.field, p.rule, p.message) for p in info.value.problems]


def test_labels_travel_in_the_spec_and_a_job_without_any_fingerprints_as_before():
    spec = validate_job({**BASE, "metadata": {"user": "u-42", "tag:kind": "avatar", "empty": ""}})
    assert spec["metadata"] == {"user": "u-42", "tag:kind": "avatar", "empty": ""}
    assert "metadata" not in validate_job(BASE)
    assert fingerprint(validate_job({**BASE, "metadata": {}})) == fingerprint(validate_job(BASE))
    largest = {f"k{i:02d}" + "x" * 61: "v" * 256 for i in range(16)}
    assert validate_job({**BASE, "metadata": largest})["metadata"] == largest  # the stated limits are allowed


@pytest.mark.parametrize("metadata, field, rule, says", [
    ({f"k{i}": "v" for i in range(17)}, "metadata", "max-items", "at most 16"),
    ({"k" * 65: "v"}, "metadata." + "k" * 65, "pattern", "{1,64}"),
    ({"": "v"}, "metadata", "pattern", "{1,64}"),
    ({"user id": "v"}, "metadata.user id", "pattern", "A-Za-z0-9_.:-"),
    ({"user": "v" * 257}, "metadata.user", "max-length", "256"),
    ({"user": 42}, "metadata.user", "type", "must be a string"),
    ({"user": "a\x00b"}, "metadata.user", "characters", "NUL"),
    (["user"], "metadata", "type", "must be an object"),
])
def test_bad_labels_are_a_422_naming_the_field_and_the_bound(metadata, field, rule, says):
    [(got_field, got_rule, message)] = _problems(metadata)
    assert (got_field, got_rule) == (field, rule) and says in message


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, aws_clients("dynamodb"))


def _app(store):
    return ApiApp(store, InMemoryQueue(), ApiOptions(auth_mode="none", read_rate_per_second=None))


def _create(app, metadata=None, owner="alice"):
    body = {**BASE, **({"metadata": metadata} if metadata is not None else {})}
    resp = app.handle(Request("POST", "/v1/jobs", body=json.dumps(body).encode(),
                              principal=Principal(id=owner, kind="api-key")))
    assert resp.status in (201, 202), resp.body
    return resp.body


def _list(app, query, owner="alice"):
    resp = app.handle(Request("GET", "/v1/jobs", query=query, principal=Principal(id=owner, kind="api-key")))
    return resp.status, resp.body


def test_labels_are_on_the_job_and_filter_the_list(store):
    app = _app(store)
    a = _create(app, {"user": "u-1", "kind": "avatar"})
    b = _create(app, {"user": "u-2", "kind": "avatar"})
    c = _create(app)
    _create(app, {"user": "u-1"}, owner="bob")  # another tenant's job with the same label: never listed
    assert a["metadata"] == {"user": "u-1", "kind": "avatar"} and c["metadata"] == {}
    got = app.handle(Request("GET", f"/v1/jobs/{a['id']}", principal=Principal(id="alice", kind="api-key"))).body
    assert got["metadata"] == {"user": "u-1", "kind": "avatar"}
    status, page = _list(app, {"metadata.user": "u-1"})
    assert status == 200 and [j["id"] for j in page["jobs"]] == [a["id"]]
    status, page = _list(app, {"metadata.kind": "avatar"})
    assert [j["id"] for j in page["jobs"]] == [b["id"], a["id"]]  # newest first
    status, page = _list(app, {"metadata.kind": "avatar", "metadata.user": "u-2", "status": "queued"})
    assert [j["id"] for j in page["jobs"]] == [b["id"]]
    status, page = _list(app, {"metadata.user": "nobody"})
    assert page["jobs"] == [] and page["next_cursor"] is None
    status, page = _list(app, {})
    assert {j["id"] for j in page["jobs"]} == {a["id"], b["id"], c["id"]}


@pytest.mark.parametrize("query, field, says", [
    ({"metadata.user id": "x"}, "query.metadata.user id", "1-64 letters"),
    ({"metadata.": "x"}, "query.metadata.", "1-64 letters"),
    ({"metadata.user": "v" * 257}, "query.metadata.user", "at most 256"),
    ({f"metadata.k{i}": "v" for i in range(17)}, "query.metadata", "at most 16"),
    ({"label.user": "x"}, "query.label.user", "metadata.<key>"),
])
def test_bad_label_filters_are_a_422_naming_the_parameter(store, query, field, says):
    status, body = _list(_app(store), query)
    assert status == 422 and body["errors"][0]["field"] == field and says in body["errors"][0]["message"]


def test_webhooks_carry_the_labels():
    record = new_record(validate_job({**BASE, "metadata": {"user": "u-9"}}), owner="alice")
    assert record["metadata"] == {"user": "u-9"}  # an attribute of its own, for the list filter
    assert public_view(record, "", None)["metadata"] == {"user": "u-9"}  # webhook payloads are this view
    assert "metadata" not in new_record(validate_job(BASE), owner="alice")
