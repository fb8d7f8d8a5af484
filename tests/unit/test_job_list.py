"""GET /v1/jobs (issue 39): the caller's jobs newest first, from the owner index (a Query, not a scan).

The store and the app run on moto's DynamoDB with the table local mode makes (``create_table``, the shape
components/job_store.py declares); the calls the store makes are recorded to show the index is queried.
"""

from __future__ import annotations

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import Principal
from runtime.api.job_list import encode_cursor
from runtime.jobs.store import OWNER_INDEX, JobStore, new_record
from runtime.queues.memory import InMemoryQueue

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": None,
        "webhook_events_filter": ["completed"]}


class Recording:
    """The boto3 client, with the names of the calls made through it."""

    def __init__(self, client):
        self.client, self.calls = client, []

    def __getattr__(self, name):
        attr = getattr(self.client, name)
        if not callable(attr):
            return attr

        def call(**kwargs):
            self.calls.append((name, kwargs))
            return attr(**kwargs)
        return call


@pytest.fixture
def store(aws_clients, job_table):
    return JobStore(job_table, Recording(aws_clients("dynamodb")))


def _jobs(store, owner, count, start=1_800_000_000.0, key=None):
    ids = []
    for i in range(count):
        record, _ = store.create(new_record(SPEC, owner=owner, now=start + i),
                                 idempotency_key=f"{key}-{i}" if key else None, fingerprint="f" if key else None)
        ids.append(record["job_id"])
    return ids


def _app(store):
    return ApiApp(store, InMemoryQueue(), ApiOptions(auth_mode="none", read_rate_per_second=None))


def _get(app, query=None, owner="alice"):
    resp = app.handle(Request("GET", "/v1/jobs", query=query or {}, principal=Principal(id=owner, kind="api-key")))
    return resp.status, resp.body


def test_newest_first_only_the_callers_jobs_from_the_owner_index(store):
    mine = _jobs(store, "alice", 5, key="k")  # with Idempotency-Keys: their idem# items must not be listed
    _jobs(store, "bob", 3)
    store.client.calls.clear()
    status, body = _get(_app(store))
    assert status == 200
    assert [j["id"] for j in body["jobs"]] == mine[::-1]
    assert body["next_cursor"] is None
    assert {"status", "created_at", "outputs", "urls"} <= set(body["jobs"][0])
    assert "owner" not in body["jobs"][0]
    assert [name for name, _ in store.client.calls] == ["query"]
    assert store.client.calls[0][1]["IndexName"] == OWNER_INDEX


def test_cursor_pages_through_every_job_once(store):
    mine = _jobs(store, "alice", 7)
    app, seen, cursor = _app(store), [], None
    for _ in range(5):
        status, body = _get(app, {"limit": "3", **({"cursor": cursor} if cursor else {})})
        assert status == 200 and len(body["jobs"]) <= 3
        seen += [j["id"] for j in body["jobs"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == mine[::-1]


def test_status_filter(store):
    ids = _jobs(store, "alice", 6)
    store.cancel(ids[1])
    store.cancel(ids[4])
    app = _app(store)
    status, body = _get(app, {"status": "canceled", "limit": "1"})
    assert status == 200 and [j["id"] for j in body["jobs"]] == [ids[4]]
    status, body = _get(app, {"status": "canceled", "cursor": body["next_cursor"]})
    assert [j["id"] for j in body["jobs"]] == [ids[1]]
    status, body = _get(app, {"status": "queued,canceled"})
    assert len(body["jobs"]) == 6


def test_a_cursor_reads_only_the_callers_own_jobs(store):
    _jobs(store, "alice", 2)
    bobs = _jobs(store, "bob", 2, start=1_700_000_000.0)
    status, body = _get(_app(store), {"cursor": encode_cursor((1_900_000_000.0, bobs[0]))}, owner="alice")
    assert status == 200 and len(body["jobs"]) == 2 and not {j["id"] for j in body["jobs"]} & set(bobs)


@pytest.mark.parametrize(("query", "field", "says"), [
    ({"limit": "0"}, "query.limit", "1 to 100"),
    ({"limit": "many"}, "query.limit", "1 to 100"),
    ({"limit": "101"}, "query.limit", "1 to 100"),
    ({"limit": "\u00b2"}, "query.limit", "1 to 100"),  # a digit to str.isdigit, not to int()
    ({"cursor": encode_cursor((1e300, "j_01M995CC5Z24ZTTWVA2Z3FXWTJ"))}, "query.cursor", "next_cursor"),
    ({"cursor": "W" * 5000 + "0" * 5000}, "query.cursor", "next_cursor"),
    ({"status": "done"}, "query.status", "queued, running, succeeded, failed, canceled"),
    ({"cursor": "not-a-cursor"}, "query.cursor", "next_cursor"),
    ({"cursor": encode_cursor((1.0, "j_nope"))}, "query.cursor", "next_cursor"),
    ({"sort": "asc"}, "query.sort", "limit, status, cursor"),
])
def test_bad_query_is_a_422_naming_the_parameter(store, query, field, says):
    status, body = _get(_app(store), query)
    assert status == 422, body
    assert body["errors"][0]["field"] == field and says in body["errors"][0]["message"]


def test_needs_credentials(store, aws_clients):
    app = ApiApp(store, InMemoryQueue(), ApiOptions(auth_mode="iam"))
    assert app.handle(Request("GET", "/v1/jobs")).status == 401
