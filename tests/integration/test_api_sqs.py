"""The job API over HTTP (local server, same handler as Lambda) against moto's DynamoDB and SQS."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from fleetdev.local.webhook_dispatcher import LocalWebhookDispatcher
from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app
from runtime.functions.webhooks import WebhookSender, verify_signature
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.store import JobStore
from runtime.queues import QueueMessage
from tests.atomic_ddb import AtomicCalls

pytestmark = pytest.mark.integration
KEY, _ = generate_key("alice")
OTHER, _ = generate_key("bob")
SECRET = "whsec-test"
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512}}


@pytest.fixture
def api(moto_endpoint, job_table, sqs_queue, aws_clients):
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(KEY, OTHER), allow_loopback=True,
                    hot_models=("sdxl-base-1.0",), endpoint_url=moto_endpoint,
                    region="us-east-1", quota_per_day=50, outputs_base_url="https://cdn.example.com")
    app = build_app(cfg, clients={"dynamodb": AtomicCalls(aws_clients("dynamodb"))})  # atomic per call, as on AWS
    with LocalApiServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {KEY}"
        yield client, app


@pytest.fixture
def hook_receiver():
    got: list[tuple[dict, bytes]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", got
    httpd.shutdown()
    httpd.server_close()


def _fake_worker(app, aws_clients, queue_url, stop, delay=0.2):
    """Take one job off SQS and finish it, like the worker agent would."""
    sqs = aws_clients("sqs")
    store = JobStore(app.store.table_name, aws_clients("dynamodb"))
    while not stop.is_set():
        msgs = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=1, MaxNumberOfMessages=1).get("Messages", [])
        for m in msgs:
            msg = QueueMessage.from_json(m["Body"])
            store.attempts.start_attempt(msg.job_id, "w-test", 3, 30)
            time.sleep(delay)
            store.mark_succeeded(msg.job_id, [{"key": "outputs/o.png", "content_type": "image/png"}],
                                 {"queue_wait_ms": 5, "inference_ms": 100, "total_ms": 120})
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
            return


def test_health_and_openapi_need_no_auth(api):
    client, _ = api
    assert client.get("/v1/health", headers={"Authorization": ""}).json()["status"] == "ok"
    doc = client.get("/v1/openapi.json", headers={"Authorization": ""}).json()
    assert doc["openapi"].startswith("3.1") and "/v1/jobs/{id}/cancel" in doc["paths"]


def test_auth_failures(api):
    client, _ = api
    anon = client.post("/v1/jobs", json=JOB, headers={"Authorization": ""})
    assert anon.status_code == 401 and anon.headers["content-type"] == "application/problem+json"
    assert client.post("/v1/jobs", json=JOB, headers={"Authorization": "Bearer nope"}).status_code == 403
    forged = KEY[:-4] + "AAAA"
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {forged}"}).status_code == 403
    assert client.get("/v1/models", headers={"Authorization": "", "x-api-key": KEY}).status_code == 200


def test_create_async_then_poll(api, aws_clients, sqs_queue):
    client, _ = api
    resp = client.post("/v1/jobs", json=JOB)
    assert resp.status_code == 202, resp.text
    job = resp.json()
    assert job["status"] == "queued" and resp.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["urls"]["get"].endswith(f"/v1/jobs/{job['id']}")
    body = json.loads(aws_clients("sqs").receive_message(QueueUrl=sqs_queue)["Messages"][0]["Body"])
    assert body["v"] == 1 and body["job_id"] == job["id"] and body["job"]["inputs"]["steps"] == 30
    polled = client.get(f"/v1/jobs/{job['id']}").json()
    assert polled["status"] == "queued" and polled["queue"]["waiting_seconds"] >= 0
    assert "queue_depth" in polled["queue"]
    assert client.get(f"/v1/jobs/{job['id']}", headers={"Authorization": f"Bearer {OTHER}"}).status_code == 404


def test_sync_wait_returns_finished_job(api, aws_clients, sqs_queue):
    client, app = api
    stop = threading.Event()
    worker = threading.Thread(target=_fake_worker, args=(app, aws_clients, sqs_queue, stop), daemon=True)
    worker.start()
    try:
        resp = client.post("/v1/jobs", json=JOB, headers={"Prefer": "wait=10"})
    finally:
        stop.set()
        worker.join(5)
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["status"] == "succeeded" and job["outputs"][0]["url"].startswith("https://cdn.")
    assert job["timings"]["total_ms"] == 120 and resp.headers["preference-applied"] == "wait=10"


def test_sync_wait_runs_out_with_202(api):
    client, _ = api
    started = time.monotonic()
    resp = client.post("/v1/jobs", json=JOB, headers={"Prefer": "wait=1"})
    assert resp.status_code == 202 and resp.json()["status"] == "queued"
    assert 0.9 <= time.monotonic() - started < 5


def test_idempotency_key(api, aws_clients, sqs_queue):
    client, _ = api
    first = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "order-42"})
    again = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "order-42"})
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    other = client.post("/v1/jobs", json={**JOB, "inputs": {"prompt": "other"}},
                        headers={"Idempotency-Key": "order-42"})
    assert other.status_code == 422 and other.json()["job_id"] == first.json()["id"]
    attrs = aws_clients("sqs").get_queue_attributes(QueueUrl=sqs_queue, AttributeNames=["ApproximateNumberOfMessages"])
    assert attrs["Attributes"]["ApproximateNumberOfMessages"] == "1"  # the replay did not enqueue twice
    bad = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "x" * 300})
    assert bad.status_code == 400


def test_replay_of_a_job_that_was_never_sent_enqueues_it(api, aws_clients, sqs_queue):
    """A create that died between the job write and the queue send must not leave the job waiting forever."""
    from runtime.api.auth import parse_key
    from runtime.jobs.schema import fingerprint, validate_job
    from runtime.jobs.store import new_record

    client, app = api
    spec = validate_job(JOB, allow_loopback=True)
    orphan, created = app.store.create(new_record(spec, owner=parse_key(KEY)), idempotency_key="order-7",
                                       fingerprint=fingerprint(spec))
    assert created and orphan["enqueued"] is False  # written, never sent: what a crashed API leaves
    again = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "order-7"})
    assert again.status_code == 202 and again.json()["id"] == orphan["job_id"]
    msgs = aws_clients("sqs").receive_message(QueueUrl=sqs_queue, MaxNumberOfMessages=10).get("Messages", [])
    assert [QueueMessage.from_json(m["Body"]).job_id for m in msgs] == [orphan["job_id"]]
    assert app.store.get(orphan["job_id"])["enqueued"] is True
    third = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "order-7"})
    assert third.json()["id"] == orphan["job_id"]
    attrs = aws_clients("sqs").get_queue_attributes(QueueUrl=sqs_queue, AttributeNames=["ApproximateNumberOfMessages",
                                                                                        "ApproximateNumberOfMessagesNotVisible"])
    assert sum(int(v) for v in attrs["Attributes"].values()) == 1  # sent once, not on every replay


def test_cancel_sends_one_signed_webhook_from_the_table_stream(api, hook_receiver, aws_clients, moto_endpoint):
    """The API never sends webhooks itself: the cancel's one 'completed' event comes from the job table's
    stream (the local stand-in of the webhook functions), however many cancels race."""
    client, app = api
    url, got = hook_receiver
    sqs = aws_clients("sqs")
    deliveries = sqs.create_queue(QueueName=f"hooks-{time.time_ns()}")["QueueUrl"]
    dispatcher = LocalWebhookDispatcher(
        dynamodb=aws_clients("dynamodb"), streams=aws_clients("dynamodbstreams"), sqs=sqs,
        table=app.store.table_name, queue_url=deliveries, base_url=moto_endpoint,
        sender=WebhookSender(SECRET, allow_loopback=True, max_attempts=1), links=OutputLinks("https://cdn.example.com")).start()
    try:
        job = client.post("/v1/jobs", json={**JOB, "webhook": url}).json()
        statuses: list[int] = []

        def cancel() -> None:
            with httpx.Client(base_url=str(client.base_url), headers=dict(client.headers), timeout=30) as c:
                statuses.append(c.post(f"/v1/jobs/{job['id']}/cancel").status_code)

        threads = [threading.Thread(target=cancel) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert statuses == [200] * 10 and client.get(f"/v1/jobs/{job['id']}").json()["status"] == "canceled"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not got:
            time.sleep(0.05)
        time.sleep(1.0)  # a duplicate, if any, would arrive within this
        assert len(got) == 1, [h for h, _ in got]
        headers, body = got[0]
        assert verify_signature(SECRET, headers["webhook-signature"], body)
        assert json.loads(body)["job"]["status"] == "canceled" and headers["webhook-event"] == "completed"
    finally:
        dispatcher.stop()


def test_validation_and_routing_errors(api):
    client, _ = api
    bad = client.post("/v1/jobs", json={"model": "sdxl-base-1.0", "inputs": {"prompt": "x", "width": 513}})
    assert bad.status_code == 422
    assert {"field": "inputs.width", "rule": "multiple-of-8"}.items() <= bad.json()["errors"][0].items()
    assert client.post("/v1/jobs", content=b"{nope", headers={"Content-Type": "application/json"}).status_code == 400
    assert client.post("/v1/jobs", content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert client.get("/v1/nothing").status_code == 404
    wrong = client.delete("/v1/jobs")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "GET, POST"  # GET lists jobs (issue 39)
    assert client.get("/v1/jobs/j_00000000000000000000000000").status_code == 404
    assert client.get("/v1/jobs/..%2Fetc").status_code == 404


@pytest.mark.parametrize("hook", ["http://169.254.169.254/latest/meta-data/iam/", "http://10.0.0.8/h",
                                  "http://[fd00:ec2::254]/", "http://0x7f000001/"])
def test_ssrf_webhooks_refused_at_submit(api, hook):
    client, _ = api
    resp = client.post("/v1/jobs", json={**JOB, "webhook": hook})
    assert resp.status_code == 422 and resp.json()["errors"][0]["field"] == "webhook"


def test_models_from_config(api):
    client, _ = api
    assert client.get("/v1/models").json() == {"source": "config", "models": [{"id": "sdxl-base-1.0", "hot": True}]}


def test_quota(moto_endpoint, job_table, sqs_queue):
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(KEY,), endpoint_url=moto_endpoint,
                    region="us-east-1", quota_per_day=2)
    with LocalApiServer(build_app(cfg)) as server, httpx.Client(base_url=server.url) as client:
        codes = [client.post("/v1/jobs", json=JOB, headers={"x-api-key": KEY}).status_code for _ in range(3)]
    assert codes == [202, 202, 429]


def test_queue_outage_is_503_and_leaves_no_job(api, monkeypatch):
    client, app = api
    from runtime.queues import QueueUnavailableError

    def fail(message):
        raise QueueUnavailableError("down")

    monkeypatch.setattr(app.producer, "send", fail)
    resp = client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "k-503"})
    assert resp.status_code == 503 and resp.headers["retry-after"]
    monkeypatch.undo()
    assert client.post("/v1/jobs", json=JOB, headers={"Idempotency-Key": "k-503"}).status_code == 202
