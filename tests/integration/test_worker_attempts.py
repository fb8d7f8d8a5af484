"""The agent's side of issue 15: an interruption it did not ask for is a counted, recorded attempt failure
(never a hand-back that loops until the DLQ), and a cancel that arrives just before the backend submits
stops the submission (the ``JobContext.before_submit`` seam)."""

from __future__ import annotations

import pytest

from fleetdev.worker_support import Stack, make_agent
from runtime import metric_names as m
from runtime.backends.base import JobInterrupted
from runtime.backends.test_pattern import TestPatternBackend

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


class InterruptedBySomeoneElse(TestPatternBackend):
    """The backend ends the prompt as interrupted although this agent never asked (another client's
    /interrupt, a restarted agent stopping an earlier attempt); ``times`` attempts end this way."""

    def __init__(self, times: int) -> None:
        super().__init__(delay_seconds=0)
        self.times = times

    def run(self, ctx):
        if self.times > 0:
            self.times -= 1
            raise JobInterrupted(f"ComfyUI interrupted prompt {ctx.backend_id}")
        return super().run(ctx)


def test_unrequested_interrupt_is_a_recorded_attempt_failure_then_the_retry_succeeds(stack):
    agent = make_agent(stack, stack.config(), backend=InterruptedBySomeoneElse(times=1))
    job_id = stack.submit()
    agent.run(max_jobs=2)
    record = stack.store.get(job_id)
    assert record["status"] == "succeeded" and record["attempts"] == 2, record
    assert [e["attempt"] for e in record["attempt_errors"]] == [1]
    assert "interrupted without a request from this agent" in record["attempt_errors"][0]["message"]
    assert not any(m.JOBS_HANDED_BACK in r for r in agent.metrics.records)


def test_unrequested_interrupts_on_every_attempt_end_failed_not_running(stack):
    """Before the fix each one was a hand-back: nothing recorded, the record left "running" forever."""
    agent = make_agent(stack, stack.config(), backend=InterruptedBySomeoneElse(times=99))
    job_id = stack.submit()
    agent.run(idle_exit_seconds=1.5)
    record = stack.store.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "attempts-exhausted", record
    assert [e["attempt"] for e in record["attempt_errors"]] == [1, 2]
    assert {e["code"] for e in record["attempt_errors"]} == {"interrupted"}
    # Settled by the agent: the message is removed (the DLQ is for what no worker could settle).
    assert stack.counts() == (0, 0) and stack.counts(stack.dlq_url) == (0, 0)


class CanceledWhileUploading(TestPatternBackend):
    """A cancel request lands while the backend prepares (uploads inputs); then it asks before submitting."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(delay_seconds=0)
        self.stack = stack
        self.submitted = 0

    def run(self, ctx):
        self.stack.store.request_cancel(ctx.job_id)
        ctx.check_before_submit()
        self.submitted += 1
        return super().run(ctx)


def test_cancel_just_before_submission_is_honoured(stack):
    backend = CanceledWhileUploading(stack)
    agent = make_agent(stack, stack.config(), backend=backend)
    job_id = stack.submit()
    agent.run(max_jobs=1)
    assert stack.store.get(job_id)["status"] == "canceled"
    assert backend.submitted == 0
    assert stack.counts() == (0, 0)
