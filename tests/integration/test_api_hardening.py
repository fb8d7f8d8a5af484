"""Regression tests for the API probe's findings (issue 16): encoding, queue size, quota order, replay races,
cancel races, auth edge cases and Prefer parsing. Real JobStore and SqsJobProducer on moto, over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key, parse_key
from runtime.api.handler import ApiConfig, build_app
from runtime.jobs.schema import fingerprint, validate_job
from runtime.jobs.store import new_record
from runtime.queues import QueueMessage
from tests.atomic_ddb import AtomicCalls

pytestmark = pytest.mark.integration
KEY, _ = generate_key("alice")
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512}}


def _config(moto_endpoint, job_table, sqs_queue, **overrides):
    base = {"job_table": job_table, "queue_url": sqs_queue, "api_keys": (KEY,), "allow_loopback": True,
            "endpoint_url": moto_endpoint, "region": "us-east-1"}
    return ApiConfig(**{**base, **overrides})


@pytest.fixture
def served(moto_endpoint, job_table, sqs_queue, aws_clients):
    """``served(**config overrides)`` -> (httpx client with the key, app); servers stop at teardown.

    DynamoDB calls are atomic per request (tests/atomic_ddb.py), as on AWS; moto's are not under threads.
    """
    stack = []

    def start(**overrides):
        app = build_app(_config(moto_endpoint, job_table, sqs_queue, **overrides),
                        clients={"dynamodb": AtomicCalls(aws_clients("dynamodb"))})
        server = LocalApiServer(app).start()
        client = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {KEY}"})
        stack.append((server, client))
        return client, app

    yield start
    for server, client in stack:
        client.close()
        server.stop()


def _messages(aws_clients, queue_url) -> int:
    attrs = aws_clients("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    return sum(int(v) for v in attrs["Attributes"].values())


def _items(aws_clients, table) -> list[str]:
    return [i["pk"]["S"] for i in aws_clients("dynamodb").scan(TableName=table)["Items"]]


# --- finding 1: lone surrogates ----------------------------------------------------------------------------
@pytest.mark.parametrize("body, field", [
    ('{"model":"sdxl-base-1.0","inputs":{"prompt":"a \\ud800 b"}}', "inputs.prompt"),
    ('{"model":"sdxl-base-1.0","inputs":{"prompt":"x","negative_prompt":"\\udfff"}}', "inputs.negative_prompt"),
    ('{"model":"sdxl-base-1.0","inputs":{"prompt":"x"},"webhook":"https://example.com/\\ud800"}', "webhook"),
    ('{"model":"sdxl-base-1.0","task":"img2img","inputs":{"prompt":"x","image":"https://e.com/\\ud83d.png"}}',
     "inputs.image"),
    ('{"model":"sdxl-base-1.0","task":"comfyui-workflow","inputs":{"workflow":'
     '{"1":{"class_type":"CLIPTextEncode","inputs":{"text":"\\ud800"}}}}}', "inputs.workflow.1.inputs.text"),
])
def test_lone_surrogate_is_a_422_naming_the_field(served, aws_clients, job_table, body, field):
    client, _ = served()
    resp = client.post("/v1/jobs", content=body.encode(), headers={"Content-Type": "application/json"})
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["errors"][0]["field"] == field and problem["errors"][0]["rule"] == "encoding"
    assert _items(aws_clients, job_table) == []
    # A valid surrogate pair (an emoji) is fine.
    ok = client.post("/v1/jobs", content=b'{"model":"sdxl-base-1.0","inputs":{"prompt":"\\ud83d\\ude00"}}',
                     headers={"Content-Type": "application/json"})
    assert ok.status_code == 202 and ok.json()["inputs"]["prompt"] == "\U0001F600"


# --- finding 2: the queue's real limit ----------------------------------------------------------------------
def _oversized_workflow_job() -> bytes:
    """Under the 256,000-byte body limit as UTF-8, over SQS's 256 KiB once JSON escapes the CJK text."""
    text = "山" * 3000  # 9,000 bytes of UTF-8, 18,000 once escaped as \\uXXXX
    workflow = {str(i): {"class_type": "CLIPTextEncode", "inputs": {"text": text}} for i in range(10)}
    image = "data:image/png;base64," + "A" * 140_000
    body = json.dumps({"model": "sdxl-base-1.0", "task": "comfyui-workflow",
                       "inputs": {"workflow": workflow, "images": {"a.png": image}}}, ensure_ascii=False).encode()
    assert len(body) < 256_000
    return body


def test_a_job_whose_queue_message_would_not_fit_is_413_before_anything_is_written(
        served, aws_clients, job_table, sqs_queue):
    client, app = served(quota_per_day=5)
    body = _oversized_workflow_job()
    resp = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json",
                                                           "Idempotency-Key": "big-1"})
    assert resp.status_code == 413, resp.text
    assert resp.json()["errors"][0]["rule"] == "max-message-size"
    assert _items(aws_clients, job_table) == []  # no job, no key, no quota unit
    assert _messages(aws_clients, sqs_queue) == 0
    # The queue really would have refused it (the old path answered 503 + Retry-After for ever).
    spec = validate_job(json.loads(body), allow_loopback=True)
    message = QueueMessage(job_id="j_X", job=spec)
    assert app.producer.message_size(message) > 262_144
    from runtime.queues import QueueUnavailableError

    with pytest.raises(QueueUnavailableError):
        app.producer.send(message)


def test_the_size_check_matches_what_sqs_accepts(served, aws_clients, sqs_queue):
    """A job whose message is within 100 bytes of the limit is sent and accepted; 8 more characters refuse it."""
    client, app = served()

    def job(pad: int) -> dict:
        workflow = {"1": {"class_type": "CLIPTextEncode", "inputs": {"text": "山" * 10_000}}}  # 60,000 escaped
        images = {f"{i}.png": "data:image/png;base64," + "A" * 48_000 for i in range(4)}
        images["pad.png"] = "data:image/png;base64," + "A" * pad
        return {"model": "sdxl-base-1.0", "task": "comfyui-workflow",
                "inputs": {"workflow": workflow, "images": images}}

    def size(pad: int) -> int:
        spec = validate_job(job(pad), allow_loopback=True)
        return app.producer.message_size(QueueMessage(job_id="j_" + "0" * 26, job=spec, enqueued_at=time.time()))

    pad = (app.producer.max_message_bytes - 32 - size(0)) // 4 * 4  # the largest that passes, to 4 characters
    assert 0 <= app.producer.max_message_bytes - 32 - size(pad) < 100
    body = json.dumps(job(pad), ensure_ascii=False).encode()
    assert len(body) < 256_000
    resp = client.post("/v1/jobs", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 202, resp.text
    assert _messages(aws_clients, sqs_queue) == 1
    over = client.post("/v1/jobs", content=json.dumps(job(pad + 100), ensure_ascii=False).encode(),
                       headers={"Content-Type": "application/json"})
    assert over.status_code == 413


def test_local_and_test_queues_declare_the_aws_limit(aws_clients, sqs_queue, moto_endpoint):
    attrs = aws_clients("sqs").get_queue_attributes(QueueUrl=sqs_queue, AttributeNames=["MaximumMessageSize"])
    assert attrs["Attributes"]["MaximumMessageSize"] == "262144"
    import uuid

    from fleetdev.local.bootstrap import create

    res = create(moto_endpoint, prefix=f"hard-{uuid.uuid4().hex[:6]}")
    for url in (res.queue_url, res.dlq_url):
        got = aws_clients("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["MaximumMessageSize"])
        assert got["Attributes"]["MaximumMessageSize"] == "262144"


# --- finding 4: quota after the idempotency lookup ------------------------------------------------------------
def test_a_retry_of_the_last_allowed_request_gets_its_job_not_429(served):
    client, _ = served(quota_per_day=1)
    first = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "last-one"})
    assert first.status_code == 202
    retry = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "last-one"})
    assert retry.status_code == 202 and retry.json()["id"] == first.json()["id"]
    assert retry.headers["idempotent-replayed"] == "true"
    fresh = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "next-one"})
    assert fresh.status_code == 429  # the quota still holds for new jobs
    conflict = client.post("/v1/jobs", json={**JOB, "inputs": {"prompt": "other"}},
                           headers={"Idempotency-Key": "last-one"})
    assert conflict.status_code == 422  # a reused key with another body is named, not counted as quota


# --- finding 5: concurrent replays enqueue once ----------------------------------------------------------------
def test_concurrent_requests_with_one_key_make_one_job_and_one_message(served, aws_clients, sqs_queue):
    client, _ = served()
    barrier = threading.Barrier(6)

    def post(_):
        barrier.wait(timeout=30)
        return client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "burst-1"})

    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(post, range(6)))
    codes = [a.status_code for a in answers]
    assert all(code in (202, 409) for code in codes), codes
    ids = {a.json().get("id") or a.json().get("job_id") for a in answers if a.status_code in (202, 409)}
    assert len(ids) == 1 and codes.count(202) >= 1
    assert _messages(aws_clients, sqs_queue) == 1


def test_replays_while_the_creator_is_sending_do_not_send_again(served, aws_clients, sqs_queue):
    """Deterministic interleaving: the creator is held inside its send while replays arrive."""
    client, app = served()
    in_send, release = threading.Event(), threading.Event()
    real_send = app.producer.send

    def slow_send(message):
        in_send.set()
        assert release.wait(30)
        return real_send(message)

    app.producer.send = slow_send
    with ThreadPoolExecutor(1) as pool:
        creator = pool.submit(client.post, "/v1/jobs", json=JOB, headers={"Idempotency-Key": "slow-1"})
        assert in_send.wait(30)
        app.producer.send = real_send
        replays = [client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "slow-1"}) for _ in range(4)]
        release.set()
        first = creator.result(timeout=30)
    assert first.status_code == 202
    assert [r.status_code for r in replays] == [409] * 4
    assert all(r.json()["job_id"] == first.json()["id"] and r.headers["retry-after"] for r in replays)
    assert _messages(aws_clients, sqs_queue) == 1
    after = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "slow-1"})
    assert after.status_code == 202 and after.headers["idempotent-replayed"] == "true"
    assert _messages(aws_clients, sqs_queue) == 1


def test_a_crashed_creators_job_is_sent_by_the_first_replay_after_its_lease(served, aws_clients, sqs_queue):
    client, app = served()
    spec = validate_job(JOB, allow_loopback=True)
    orphan = {**new_record(spec, owner=parse_key(KEY)), "send_lease_until": time.time() - 1}  # lease ran out
    app.store.create(orphan, idempotency_key="crash-1", fingerprint=fingerprint(spec))
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "crash-1"}),
                                range(4)))
    assert {a.status_code for a in answers} <= {202, 409} and any(a.status_code == 202 for a in answers)
    assert _messages(aws_clients, sqs_queue) == 1


# --- finding 3: cancel races --------------------------------------------------------------------------------
def test_concurrent_cancels_change_the_job_once(served):
    """Ten cancels at once: one conditional write wins; the others find the job final. Only that change
    reaches the table's stream, so the webhook functions send one 'completed' event (the stream dispatcher
    is exercised end to end in test_api_sqs.py::test_cancel_sends_one_signed_webhook_from_the_table_stream),
    and no cancel request waits on a receiver: the API sends no webhook."""
    client, app = served()
    job = client.post("/v1/jobs", json={**JOB, "webhook": "https://hooks.example.com/h"}).json()
    changes: list[bool] = []
    real_cancel = app.store.cancel

    def counting_cancel(job_id):
        record, changed = real_cancel(job_id)
        changes.append(changed)
        return record, changed

    app.store.cancel = counting_cancel
    barrier = threading.Barrier(10)

    def cancel(_):
        barrier.wait(timeout=30)
        return client.post(f"/v1/jobs/{job['id']}/cancel")

    with ThreadPoolExecutor(10) as pool:
        results = [f.result(timeout=30) for f in [pool.submit(cancel, i) for i in range(10)]]
    assert all(r.status_code == 200 and r.json()["status"] == "canceled" for r in results)
    assert sorted(changes) == [False] * 9 + [True]


# --- finding 8: auth and Prefer edge cases ----------------------------------------------------------------------
def test_bearer_without_a_token_is_401(served):
    client, _ = served()
    for value in ("Bearer", "bearer"):  # HTTP strips trailing spaces; the handler sees "Bearer " too (below)
        resp = client.get("/v1/models", headers={"Authorization": value})
        assert resp.status_code == 401, value
        assert resp.headers["www-authenticate"].startswith("Bearer")
    from runtime.api.auth import credentials_from_headers

    assert credentials_from_headers({"authorization": "Bearer    "}) is None
    assert client.get("/v1/models", headers={"Authorization": "Bearer", "x-api-key": KEY}).status_code == 200


def test_prefer_wait_with_a_fraction_waits_that_long(served):
    client, _ = served()
    started = time.monotonic()
    resp = client.post("/v1/jobs", json=JOB, headers={"Prefer": "wait=1.5"})
    elapsed = time.monotonic() - started
    assert resp.status_code == 202 and resp.headers["preference-applied"] == "wait=1.5"
    assert 1.4 <= elapsed < 10
    for odd in ("wait=1.5x", "wait=abc", "xwait=3"):
        quick = client.post("/v1/jobs", json=JOB, headers={"Prefer": odd})
        assert quick.status_code == 202 and "preference-applied" not in quick.headers, odd


def test_max_wait_zero_turns_sync_waits_off(served):
    cfg = ApiConfig.from_env({"GENAI_JOB_TABLE": "t", "GENAI_MAX_WAIT_SECONDS": "0"})
    assert cfg.max_wait_seconds == 0
    assert ApiConfig.from_env({"GENAI_JOB_TABLE": "t"}).max_wait_seconds == 25
    with pytest.raises(RuntimeError, match="GENAI_MAX_WAIT_SECONDS"):
        ApiConfig.from_env({"GENAI_JOB_TABLE": "t", "GENAI_MAX_WAIT_SECONDS": "-1"})
    client, _ = served(max_wait_seconds=0.0)
    started = time.monotonic()
    resp = client.post("/v1/jobs", json=JOB, headers={"Prefer": "wait=10"})
    assert resp.status_code == 202 and "preference-applied" not in resp.headers
    assert time.monotonic() - started < 5
