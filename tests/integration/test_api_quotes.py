"""Issue 42, item 3: ``POST /v1/quotes`` answers the expected wait and cost of a job body on the fleet as it is now,
creates nothing, and refuses what a create would refuse. The API on moto (SQS depth, the job table's index)."""

from __future__ import annotations

import time

import httpx
import pytest

from fleetdev.local_server import LocalApiServer
from fleetdev.worker_support import Stack
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app

pytestmark = pytest.mark.integration

KEY, _ = generate_key("quotes")
JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "a cat", "width": 64, "height": 64}}


@pytest.fixture(params=[()])
def api(moto_endpoint, request):
    stack = Stack(moto_endpoint)
    cfg = ApiConfig(job_table=stack.table, queue_url=stack.queue_url, api_keys=(KEY,), endpoint_url=moto_endpoint,
                    region="us-east-1", average_job_seconds=2.0, hourly_usd=1.8, tasks=("txt2img",),
                    lora_tasks=(), hot_models=request.param)
    with LocalApiServer(build_app(cfg)) as server, httpx.Client(base_url=server.url, timeout=30,
                                                                headers={"x-api-key": KEY}) as client:
        yield stack, client


def test_a_quote_on_an_idle_fleet_and_behind_a_backlog_creates_no_job(api):
    stack, client = api
    idle = client.post("/v1/quotes", json=JOB)
    assert idle.status_code == 200, idle.text
    q = idle.json()
    assert q["wait_seconds"]["expected"] == 0.0 and q["fleet"] == {"jobs_ahead": 0, "running": 0, "workers_busy": 0}
    assert q["cost_usd"]["expected"] == pytest.approx(2.0 * 1.8 / 3600) and q["gpu_seconds"]["expected"] == 2.0
    assert q["basis"]["service_source"].startswith("averageJobSeconds") and q["basis"]["hourly_usd"] == 1.8

    ids = [client.post("/v1/jobs", json=JOB).json()["id"] for _ in range(3)]
    stack.store.attempts.start_attempt(ids[0], "i-test", 3, 30)  # one running: its message is in flight
    stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    time.sleep(5.2)  # the API caches the queue's depth for 5 s
    busy = client.post("/v1/quotes", json=JOB).json()
    assert busy["fleet"] == {"jobs_ahead": 2, "running": 1, "workers_busy": 1}, busy
    assert busy["wait_seconds"] == {"expected": 5.0, "low": 4.0, "high": 8.0}  # 1 + 2 x 2; high: cold, residual 2
    assert busy["basis"]["cold_start"] == "possible" and busy["gpu_seconds"]["high"] == 4.0
    listed = client.get("/v1/jobs").json()
    assert len(listed["jobs"] if "jobs" in listed else listed["data"]) == 3  # the quotes created nothing


def test_a_quote_refuses_what_a_create_refuses(api):
    _, client = api
    assert client.post("/v1/quotes", json={**JOB, "task": "txt2video"}).status_code == 422
    assert client.post("/v1/quotes", json={"model": "sd15"}).status_code == 422
    assert client.post("/v1/quotes", json=JOB, headers={"x-api-key": "nope"}).status_code in (401, 403)


@pytest.mark.parametrize("api", [("sd15",)], indirect=True)
def test_a_hot_model_is_quoted_without_a_cold_start(api):
    """Every worker loads a hot model at boot: the high end adds no model load (the cold-start odds)."""
    stack, client = api
    ids = [client.post("/v1/jobs", json=JOB).json()["id"] for _ in range(3)]
    stack.store.attempts.start_attempt(ids[0], "i-test", 3, 30)
    stack.sqs.receive_message(QueueUrl=stack.queue_url, MaxNumberOfMessages=1, VisibilityTimeout=60)
    time.sleep(5.2)  # the API caches the queue's depth for 5 s
    q = client.post("/v1/quotes", json=JOB).json()
    assert q["basis"]["cold_start"] == "none", q
    assert q["wait_seconds"] == {"expected": 5.0, "low": 4.0, "high": 6.0}  # residual 2 + 2 x 2, no load
    assert q["gpu_seconds"]["high"] == 2.0


def test_a_quote_applies_every_rule_a_create_applies(api):
    """The same checks as a create (one function): LoRAs on a fleet that applies none are refused by both."""
    _, client = api
    body = {**JOB, "inputs": {**JOB["inputs"], "loras": [{"model": "sd15/pix", "weight": 0.5}]}}
    created, quoted = client.post("/v1/jobs", json=body), client.post("/v1/quotes", json=body)
    assert created.status_code == quoted.status_code == 422, (created.text, quoted.text)
    assert created.json()["type"] == quoted.json()["type"]
