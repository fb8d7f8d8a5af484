"""Issue 44, point 1 with a real worker loop on moto: a job whose deadline passed in the queue is canceled at its
claim (reason ``deadline``): the backend never runs it, it is not charged, its message is deleted and the
``completed`` webhook carries the reason; a job still within its deadline runs."""

from __future__ import annotations

import time

import pytest

from fleetdev.worker_support import Stack, WebhookReceiver, eventually, make_agent
from runtime.backends.base import JobContext
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.deadlines import deadline_fields
from runtime.jobs.schema import validate_job
from runtime.jobs.store import new_record
from runtime.queues.base import QueueMessage

pytestmark = pytest.mark.integration


class Counting(TestPatternBackend):
    def __init__(self) -> None:
        super().__init__(delay_seconds=0.0)
        self.ran: list[str] = []

    def run(self, ctx: JobContext):
        self.ran.append(ctx.job_id)
        return super().run(ctx)


def _submit(stack: Stack, created_at: float, deadline_s: float, webhook: str | None = None) -> str:
    body = {"model": "sd15", "inputs": {"prompt": "a cat", "width": 64, "height": 64, "seed": 1},
            "deadline_seconds": int(deadline_s)}
    if webhook:
        body["webhook"] = webhook
    spec = validate_job(body, allow_loopback=True)
    record = new_record(spec, owner="tests", now=created_at)
    record.update(deadline_fields(created_at, deadline_s))
    stack.store.create(record)
    stack.sqs.send_message(QueueUrl=stack.queue_url,
                           MessageBody=QueueMessage(job_id=record["job_id"], job=spec).to_json())
    return record["job_id"]


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def test_a_job_whose_deadline_passed_in_the_queue_is_canceled_without_running(stack):
    hooks = WebhookReceiver()
    dispatcher = stack.webhook_dispatcher("s3cret")
    now = time.time()
    expired = _submit(stack, now - 120, 60, webhook=hooks.url)  # created 2 min ago, 1 min to start: missed
    fresh = _submit(stack, now, 600)
    backend = Counting()
    agent = make_agent(stack, stack.config(), backend=backend)
    try:
        agent.run(max_jobs=2, idle_exit_seconds=5)
        record = stack.store.get(expired)
        assert record["status"] == "canceled" and record["cancel_reason"] == "deadline", record
        assert record["attempts"] == 0 and not record.get("attempt_costs") and record["started_at"] is None
        assert backend.ran == [fresh] and stack.store.get(fresh)["status"] == "succeeded"
        assert stack.counts() == (0, 0)  # both messages deleted
        eventually(lambda: hooks.events() == ["completed"], what="the completed webhook")
        body = hooks.received[0][1]
        assert body["job"]["status"] == "canceled" and body["job"]["cancel_reason"] == "deadline"
    finally:
        dispatcher.stop()
        hooks.close()
