"""The worker agent on SQS (moto server): queue -> backend -> S3/CDN URL -> record -> delete; webhooks from the
table stream (the local stand-in of the webhook Lambdas)."""

from __future__ import annotations

import time

import pytest

from fleetdev.worker_support import CDN, Stack, WebhookReceiver, eventually, make_agent, run_in_thread
from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.backends.comfyui import ComfyUIBackend
from runtime.backends.test_pattern import TestPatternBackend
from runtime.queues.base import QueueMessage
from runtime.queues.sqs_consumer import SQSConsumer
from runtime.worker.aws import RecordingAutoScaling
from runtime.worker.inputs import ImageFetcher
from tests.fakes.fake_comfyui import FakeComfyUI

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def test_job_goes_from_queue_to_cdn_url(stack):
    hooks = WebhookReceiver()
    recorder = RecordingAutoScaling(group="workers")
    agent = make_agent(stack, stack.config(), recorder=recorder)
    dispatcher = stack.webhook_dispatcher("s3cret")
    job_id = stack.submit(webhook=hooks.url)
    try:
        agent.boot()
        assert agent.run(max_jobs=1) == 1
        record = stack.store.get(job_id)
        assert record["status"] == "succeeded" and record["attempts"] == 1 and record["worker_id"] == "i-test"
        # attempt-scoped key: lease 1 made it; the record holds the key, never a URL (issue 43)
        assert record["outputs"][0]["key"] == f"outputs/{job_id}/1/image-0.png" and "url" not in record["outputs"][0]
        assert record["outputs"][0]["content_type"] == "image/png"
        assert record["outputs"][0]["generator"] == "test-pattern"  # labelled in the record, not only on S3
        head = stack.s3.head_object(Bucket=stack.bucket, Key=f"outputs/{job_id}/1/image-0.png")
        assert head["ContentType"] == "image/png" and head["Metadata"]["generator"] == "test-pattern"
        assert {"queue_wait_ms", "model_load_ms", "inference_ms", "upload_ms", "total_ms"} <= set(record["timings"])
        assert stack.counts() == (0, 0)  # deleted after the record was final
        eventually(lambda: sorted(hooks.events()) == ["completed", "start"], what="webhooks")
        by_event = {body["event"]: (headers, body) for headers, body in hooks.received}
        assert by_event["completed"][1]["job"]["status"] == "succeeded"
        # the sender made the link from the record's key when it sent the delivery (issue 43)
        assert by_event["completed"][1]["job"]["outputs"][0]["url"] == f"{CDN}/outputs/{job_id}/1/image-0.png"
        assert by_event["start"][1]["job"]["status"] == "running"  # captured when it happened, not when sent
        assert by_event["completed"][0]["Webhook-Id"] == f"{job_id}.completed"
        assert "Webhook-Signature" in by_event["completed"][0]
        ops = [(c["op"], c.get("hook"), c.get("protected")) for c in recorder.calls]
        assert ops[0] == ("complete_lifecycle_action", "launch-hook", None)
        assert ("set_instance_protection", None, True) in ops and ops[-1] == ("set_instance_protection", None, False)
        names = {name for rec in agent.metrics.records for name in rec if name in m.ALL}
        assert {m.JOBS_SUCCEEDED, m.JOB_LATENCY, m.QUEUE_WAIT, m.INFERENCE_TIME, m.UPLOAD_TIME,
                m.BOOT_TO_READY} <= names
        assert all(rec["_aws"]["CloudWatchMetrics"][0]["Namespace"] == m.NAMESPACE for rec in agent.metrics.records)
    finally:
        dispatcher.stop()
        hooks.close()


def test_heartbeat_keeps_a_long_job_invisible(stack):
    config = stack.config(queue={"visibility_timeout_seconds": 2}, test_pattern_delay_seconds=3.5)
    agent = make_agent(stack, config)
    job_id = stack.submit()
    thread = run_in_thread(agent, max_jobs=1)
    eventually(lambda: stack.store.get(job_id)["status"] == "running", what="job running")
    other = SQSConsumer(stack.sqs, stack.queue_url, 2)
    stolen = []
    deadline = time.monotonic() + 4.5
    while time.monotonic() < deadline and thread.is_alive():
        stolen += other.receive(1, 1)
    thread.join(10)
    assert stolen == []
    assert stack.store.get(job_id)["status"] == "succeeded"
    assert stack.counts() == (0, 0)


class AlwaysFails(TestPatternBackend):
    def run(self, ctx):
        raise BackendError("poison: this job always crashes the backend")


def test_poison_job_is_failed_after_the_attempt_limit_counted_in_its_record(stack):
    agent = make_agent(stack, stack.config(), backend=AlwaysFails(delay_seconds=0))
    job_id = stack.submit()
    agent.run(idle_exit_seconds=1.5)
    record = stack.store.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "attempts-exhausted"
    assert [e["attempt"] for e in record["attempt_errors"]] == [1, 2] and record["attempts"] == 2
    assert "2 attempt(s)" in record["error"]["message"]  # the history travels with the final error
    # The agent settled it: the message is gone, and the DLQ is left for what no worker could settle.
    assert stack.counts() == (0, 0) and stack.counts(stack.dlq_url) == (0, 0)
    assert sum(1 for r in agent.metrics.records if m.JOB_ERRORS in r) == 2
    assert any(m.JOBS_FAILED in r for r in agent.metrics.records)


@pytest.fixture
def comfy(tmp_path):
    fake = FakeComfyUI(tmp_path / "comfy-models", delay=0.1).start()
    yield fake
    fake.stop()


def test_backend_crash_is_retried_and_model_comes_from_the_cache(stack, comfy, tmp_path):
    stack.put_model("sd15", b"weights" * 1000)
    config = stack.config(backend="comfyui", backend_url=comfy.url, backend_model_dir=str(comfy.models_dir))
    backend = ComfyUIBackend(config, poll_seconds=0.05)
    agent = make_agent(stack, config, backend=backend, cache_dir=tmp_path / "cache")
    comfy.fail_executions = 1
    job_id = stack.submit()
    agent.run(max_jobs=2)
    record = stack.store.get(job_id)
    assert record["status"] == "succeeded" and record["attempts"] == 2
    assert "illegal memory access" in record["attempt_errors"][0]["message"]
    assert (comfy.models_dir / "model.safetensors").resolve().read_bytes() == b"weights" * 1000
    ids = [p["prompt_id"] for p in comfy.prompts]  # one prompt per attempt, never the same id twice
    assert len(set(ids)) == 2 and all(i.startswith(f"{job_id}.") for i in ids), ids
    hits = [r for r in agent.metrics.records if m.MODEL_CACHE_HITS in r or m.MODEL_CACHE_MISSES in r]
    assert m.MODEL_CACHE_MISSES in hits[0] and m.MODEL_CACHE_HITS in hits[1]


def test_dead_backend_process_is_retried_after_it_comes_back(stack, comfy, tmp_path):
    stack.put_model("sd15", b"w")
    config = stack.config(backend="comfyui", backend_url=comfy.url, backend_model_dir=str(comfy.models_dir),
                          backend_ready_timeout_seconds=10)
    agent = make_agent(stack, config, backend=ComfyUIBackend(config, poll_seconds=0.05), cache_dir=tmp_path / "c")
    comfy.die_on_execute = True
    job_id = stack.submit()
    thread = run_in_thread(agent, max_jobs=2)
    eventually(lambda: stack.store.get(job_id)["attempt_errors"], what="first attempt to fail")
    comfy.start()  # systemd restarted ComfyUI on the same port
    thread.join(20)
    assert stack.store.get(job_id)["status"] == "succeeded"


def test_cancel_is_observed_and_passed_to_the_backend(stack, comfy, tmp_path):
    stack.put_model("sd15", b"w")
    comfy.delay = 10
    config = stack.config(backend="comfyui", backend_url=comfy.url, backend_model_dir=str(comfy.models_dir))
    agent = make_agent(stack, config, backend=ComfyUIBackend(config, poll_seconds=0.05), cache_dir=tmp_path / "c")
    job_id = stack.submit()
    thread = run_in_thread(agent, max_jobs=1)
    eventually(lambda: comfy.prompts, what="prompt submitted")
    stack.store.request_cancel(job_id)
    thread.join(10)
    assert stack.store.get(job_id)["status"] == "canceled"
    assert comfy.interrupts >= 1
    assert stack.counts() == (0, 0)


def test_cancel_before_pickup_skips_the_job(stack):
    agent = make_agent(stack, stack.config())
    job_id = stack.submit()
    stack.store.request_cancel(job_id)
    agent.run(max_jobs=1)
    assert stack.store.get(job_id)["status"] == "canceled"
    assert agent.stats[0].outcome == "skipped" and stack.counts() == (0, 0)


def test_stop_hands_the_running_job_back_at_once(stack):
    agent = make_agent(stack, stack.config(test_pattern_delay_seconds=10))
    job_id = stack.submit()
    thread = run_in_thread(agent)
    eventually(lambda: stack.store.get(job_id)["status"] == "running", what="job running")
    agent.stop()
    thread.join(5)
    assert not thread.is_alive()
    again = SQSConsumer(stack.sqs, stack.queue_url).receive(1, 1)
    assert [j.message.job_id for j in again] == [job_id]  # visible at once, not after 30 s
    record = stack.store.get(job_id)
    assert record["status"] == "queued" and record["attempts"] == 0 and record["handbacks"] == 1  # not counted
    assert any(m.JOBS_HANDED_BACK in r for r in agent.metrics.records)


def test_redelivered_finished_job_is_recorded_once(stack):
    agent = make_agent(stack, stack.config())
    job_id = stack.submit()
    agent.run(max_jobs=1)
    first = stack.store.get(job_id)
    stack.sqs.send_message(QueueUrl=stack.queue_url,
                           MessageBody=QueueMessage(job_id=job_id, job=first["spec"]).to_json())
    agent2 = make_agent(stack, stack.config())
    agent2.run(max_jobs=1)
    assert agent2.stats[0].outcome == "skipped"
    assert stack.store.get(job_id)["completed_at"] == first["completed_at"]


def test_input_error_fails_at_once_without_retry(stack):
    private_dns = ImageFetcher(resolver=lambda host, port: ["10.0.0.1"])  # DNS answers a private address
    agent = make_agent(stack, stack.config(), fetcher=private_dns)
    job_id = stack.submit(task="img2img", prompt="x", image="https://images.example.com/a.png", width=64, height=64)
    agent.run(max_jobs=1)
    record = stack.store.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "invalid-input"
    assert "refused" in record["error"]["message"] and stack.counts() == (0, 0)


@pytest.mark.parametrize("pipelined", [True, False], ids=["prefetch", "serial"])
def test_a_message_whose_spec_breaks_the_apis_rules_fails_for_good_at_its_claim(stack, pipelined):
    """A message the API did not make (steps past its limit, an input it does not know, here the old per-job
    test-pattern delay) is read with the API's rules, once: the job fails for good naming each field, its
    message is deleted and the backend never runs it (no attempt is spent on a retry)."""
    from runtime.jobs.schema import validate_job
    from runtime.jobs.store import new_record

    spec = validate_job({"model": "sd15", "inputs": {"prompt": "x", "width": 64, "height": 64, "seed": 1}})
    record = new_record(spec, owner="tests")
    stack.store.create(record)
    bad = {**spec, "inputs": {**spec["inputs"], "steps": 500, "test_pattern_delay_seconds": 2}}
    stack.sqs.send_message(QueueUrl=stack.queue_url,
                           MessageBody=QueueMessage(job_id=record["job_id"], job=bad).to_json())
    # With prefetch the spec is read as the message arrives; serial (prefetch_jobs 0, as on Kafka), at the claim.
    agent = make_agent(stack, stack.config(prefetch_jobs=1 if pipelined else 0))
    assert agent.run(max_jobs=1) == 1
    final = stack.store.get(record["job_id"])
    assert final["status"] == "failed" and final["error"]["code"] == "invalid-input" and final["attempts"] == 1
    assert "inputs.steps" in final["error"]["message"] and "[range]" in final["error"]["message"]
    assert "inputs.test_pattern_delay_seconds" in final["error"]["message"]
    assert agent.stats[0].outcome == "failed" and stack.counts() == (0, 0)
