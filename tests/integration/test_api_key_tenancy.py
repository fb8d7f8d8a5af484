"""Issue 43, items 3 and 5 through the API (the Lambda event adapter over the real JobStore on moto): a tenant owns
jobs, idempotency keys and quota, so a rotated pair of keys shares them; a revoked key is refused within the stated
bound and answered like an unknown key; operator routes refuse tenant keys with 403.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

import pytest

from runtime.api.app import ApiApp, ApiOptions
from runtime.api.auth import SsmKeyStore, StaticKeyStore, generate_key
from runtime.api.handler import handle_event
from runtime.jobs.key_use import KeyUse
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue
from tools import api_keys

pytestmark = pytest.mark.integration
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse", "width": 512, "height": 512}}


def _app(aws_clients, job_table, keys, now=None, **options) -> ApiApp:
    """The app as runtime.api.handler.build_app wires it (key use recorded in the job table)."""
    opts = {"auth_mode": "api-key", "max_wait_seconds": 0.0, **options}
    clock = {"clock": lambda: now[0]} if now is not None else {}
    ddb = aws_clients("dynamodb")
    return ApiApp(JobStore(job_table, ddb), InMemoryQueue(), ApiOptions(**opts), keys=keys,
                  key_use=KeyUse(job_table, ddb, **clock), **clock)


def _call(app, method, path, key, body=None, headers=None):
    hdrs = {"content-type": "application/json", "authorization": f"Bearer {key}", **(headers or {})}
    event = {"version": "2.0", "rawPath": path, "headers": hdrs, "isBase64Encoded": False,
             "body": json.dumps(body) if body is not None else None,
             "requestContext": {"http": {"method": method, "path": path, "sourceIp": "198.51.100.7"},
                                "requestId": "t"}}
    result = handle_event(event, app)
    return result["statusCode"], json.loads(result["body"]) if result["body"] else None


def test_a_rotated_pair_shares_the_tenants_jobs_idempotency_keys_and_quota(aws_clients, job_table):
    old_key, old = generate_key("alice")
    new_key, new = generate_key("alice again", tenant=old.tenant)  # what `api-key rotate` writes
    other_key, other = generate_key("mallory")
    app = _app(aws_clients, job_table, StaticKeyStore({r.key_id: r for r in (old, new, other)}), quota_per_day=3)
    status, job = _call(app, "POST", "/v1/jobs", old_key, JOB, {"idempotency-key": "order-1"})
    assert status == 202
    assert _call(app, "GET", f"/v1/jobs/{job['id']}", new_key)[0] == 200
    assert [j["id"] for j in _call(app, "GET", "/v1/jobs", new_key)[1]["jobs"]] == [job["id"]]
    status, replay = _call(app, "POST", "/v1/jobs", new_key, JOB, {"idempotency-key": "order-1"})
    assert status == 202 and replay["id"] == job["id"]  # the tenant's idempotency key, whichever key sends it
    assert _call(app, "GET", f"/v1/jobs/{job['id']}", other_key)[0] == 404  # another tenant: unknown
    assert [_call(app, "POST", "/v1/jobs", k, JOB)[0] for k in (new_key, old_key, new_key)] == [202, 202, 429]
    assert _call(app, "POST", "/v1/jobs", other_key, JOB)[0] == 202  # its own quota


def test_keys_minted_before_tenants_keep_their_jobs(aws_clients, job_table):
    key, record = generate_key("legacy")
    store = JobStore(job_table, aws_clients("dynamodb"))
    app = _app(aws_clients, job_table, StaticKeyStore({record.key_id: record}))
    status, job = _call(app, "POST", "/v1/jobs", key, JOB)
    assert status == 202 and store.get(job["id"])["owner"] == record.key_id  # tenant = key id: nothing moved


def test_a_revoked_key_is_refused_through_the_api_within_the_bound_like_an_unknown_key(aws_clients, job_table):
    ssm, now = aws_clients("ssm"), [1_767_225_600.0]
    prefix = f"/genai-fleet/t{uuid.uuid4().hex[:8]}/api-keys"
    keys = SsmKeyStore(ssm, prefix, clock=lambda: now[0], accept_untagged=True)  # the API instance's cache
    app = _app(aws_clients, job_table, keys, now=now)
    minted = api_keys.create(SsmKeyStore(ssm, prefix), "bob")
    assert _call(app, "GET", "/v1/jobs", minted["key"])[0] == 200
    api_keys.revoke(SsmKeyStore(ssm, prefix), minted["key_id"])
    now[0] += api_keys.REVOCATION_BOUND_SECONDS - 1
    assert _call(app, "GET", "/v1/jobs", minted["key"])[0] == 200  # the cached record, within the bound
    now[0] += 1
    revoked = _call(app, "GET", "/v1/jobs", minted["key"])
    unknown = _call(app, "GET", "/v1/jobs", generate_key("never stored")[0])
    assert revoked == unknown and revoked[0] == 403  # status and body: nothing tells the key existed


def test_the_api_records_each_keys_last_use_day(aws_clients, job_table):
    ssm, now = aws_clients("ssm"), [1_767_225_600.0]
    prefix = f"/genai-fleet/t{uuid.uuid4().hex[:8]}/api-keys"
    minted = api_keys.create(SsmKeyStore(ssm, prefix), "carol")
    refused_only = api_keys.create(SsmKeyStore(ssm, prefix), "dave")
    app = _app(aws_clients, job_table, SsmKeyStore(ssm, prefix, accept_untagged=True), now=now)
    for _ in range(3):
        assert _call(app, "GET", "/v1/jobs", minted["key"])[0] == 200
    assert _call(app, "POST", "/v1/jobs", refused_only["key"], {"model": 7})[0] == 422  # refused: writes nothing
    listed = api_keys.list_keys(ssm, prefix, app.key_use)
    assert sorted((k["name"], k["last_used"]) for k in listed["keys"]) == [("carol", "2026-01-01"), ("dave", None)]


def test_operator_routes_refuse_tenant_keys_with_403(aws_clients, job_table):
    tenant_key, tenant = generate_key("tenant")
    operator_key, operator = generate_key("ops")
    operator = replace(operator, scope="operator")
    app = _app(aws_clients, job_table, StaticKeyStore({r.key_id: r for r in (tenant, operator)}))
    status, body = _call(app, "GET", "/v1/fleet", tenant_key)
    assert status == 403 and body["type"].endswith("/forbidden-scope") and "operator" in body["detail"]
    status, fleet = _call(app, "GET", "/v1/fleet", operator_key)
    assert status == 200 and fleet["queues"]


def test_get_fleet_answers_operator_keys_through_the_local_server(tmp_path, moto_endpoint, job_table, sqs_queue):
    import httpx

    from fleetdev.local_server import LocalApiServer
    from runtime.api.handler import ApiConfig, build_app

    tenant_key, _ = generate_key("local")
    operator_key, operator = generate_key("local operator", scope="operator")
    keys_file = tmp_path / "api-keys.json"  # as local mode writes it (fleetdev/local/platform.py)
    keys_file.write_text(json.dumps({operator.key_id: json.loads(operator.to_json())}))
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(tenant_key,), api_keys_file=str(keys_file),
                    endpoint_url=moto_endpoint, region="us-east-1")
    with LocalApiServer(build_app(cfg)) as srv:
        host, port = srv.httpd.server_address[:2]
        base = f"http://{host}:{port}"
        posted = httpx.post(f"{base}/v1/jobs", json=JOB, headers={"Authorization": f"Bearer {tenant_key}"})
        assert posted.status_code == 202
        refused = httpx.get(f"{base}/v1/fleet", headers={"Authorization": f"Bearer {tenant_key}"})
        assert refused.status_code == 403 and refused.json()["type"].endswith("/forbidden-scope")
        fleet = httpx.get(f"{base}/v1/fleet", headers={"Authorization": f"Bearer {operator_key}"})
    assert fleet.status_code == 200
    [queue] = fleet.json()["queues"]
    assert queue["name"] == "jobs" and queue["depth"] == 1 and "oldest_age_seconds" in queue
