"""The pipelined agent against SQS and DynamoDB on moto: a prefetched job is received, not started; a stop or
a spot notice hands it back at once; settling overlaps the next job; nothing is lost or run twice."""

from __future__ import annotations

import time

import pytest

from fleetdev.worker_support import Stack, eventually, make_agent, run_in_thread
from runtime.backends.base import JobInterrupted
from runtime.backends.test_pattern import TestPatternBackend
from runtime.worker.lifecycle import SPOT, Notice

WAIT = 30.0  # generous: a loaded 2-core machine


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


class SlowFirst(TestPatternBackend):
    """The job with prompt "slow" takes ``seconds`` (interruptible); the others are quick."""

    def __init__(self, seconds: float) -> None:
        super().__init__(delay_seconds=0.05)
        self.seconds = seconds

    def run(self, ctx):
        if ctx.job.inputs.prompt == "slow" and ctx.cancel.wait(self.seconds):
            raise JobInterrupted(f"job {ctx.job_id} interrupted")
        return super().run(ctx)


def _slow_then_prefetched(stack: Stack, seconds: float = 3.0):
    first = stack.submit(prompt="slow", width=64, height=64, seed=1)
    second = stack.submit(prompt="next", width=64, height=64, seed=2)
    return first, second, SlowFirst(seconds)


def _prefetched(stack: Stack, agent, first: str) -> None:
    eventually(lambda: stack.store.get(first)["status"] == "running", WAIT, "the first job running")
    eventually(lambda: agent._pipeline is not None and agent._pipeline.prefetcher.held() == 1, WAIT,
               "the second job prefetched")


def test_a_prefetched_job_is_received_but_not_started(stack):
    first, second, backend = _slow_then_prefetched(stack)
    agent = make_agent(stack, stack.config(), backend=backend)
    thread = run_in_thread(agent, max_jobs=2)
    _prefetched(stack, agent, first)
    record = stack.store.get(second)
    assert record["status"] == "queued" and not record.get("attempts")  # no attempt counted while it waits
    assert stack.counts() == (0, 2)  # both invisible: the prefetched one is held, not on offer
    thread.join(WAIT)
    assert not thread.is_alive()
    for job_id in (first, second):
        record = stack.store.get(job_id)
        assert record["status"] == "succeeded" and record["attempts"] == 1
    assert stack.counts() == (0, 0)


def test_stop_hands_the_prefetched_message_back_at_once_and_the_running_job_too(stack):
    first, second, backend = _slow_then_prefetched(stack, seconds=20)
    agent = make_agent(stack, stack.config(), backend=backend)
    thread = run_in_thread(agent)
    _prefetched(stack, agent, first)
    t = time.monotonic()
    agent.stop()
    eventually(lambda: stack.counts() == (2, 0), WAIT, "both messages visible again")
    assert time.monotonic() - t < 10  # at once, not after the 30 s visibility timeout
    thread.join(WAIT)
    assert not thread.is_alive()
    assert stack.store.get(second)["status"] == "queued" and not stack.store.get(second).get("attempts")
    handed = stack.store.get(first)
    assert handed["status"] == "queued" and handed["attempts"] == 0 and handed["handbacks"] == 1  # not counted
    rerun = make_agent(stack, stack.config(worker_id="i-other"))
    rerun.run(max_jobs=2, idle_exit_seconds=5)
    assert all(stack.store.get(j)["status"] == "succeeded" for j in (first, second))


def test_spot_notice_hands_back_the_prefetched_job_and_finishes_the_running_one(stack):
    first, second, backend = _slow_then_prefetched(stack, seconds=2)
    agent = make_agent(stack, stack.config(), backend=backend)
    thread = run_in_thread(agent)
    _prefetched(stack, agent, first)
    agent.on_notice(Notice(SPOT, time.time() + 120, "terminate"))
    eventually(lambda: stack.counts()[0] == 1, WAIT, "the prefetched message visible again")
    thread.join(WAIT)
    assert not thread.is_alive()
    assert stack.store.get(first)["status"] == "succeeded"  # it fitted in the two minutes
    record = stack.store.get(second)
    assert record["status"] == "queued" and not record.get("attempts")
    assert stack.counts() == (1, 0)


@pytest.mark.parametrize(("claim_ahead", "overlap_settle"), [(False, False), (False, True), (True, True)])
def test_a_saturated_queue_runs_every_job_once(stack, claim_ahead, overlap_settle):
    ids = [stack.submit(prompt=f"j{i}", width=64, height=64, seed=i) for i in range(12)]
    agent = make_agent(stack, stack.config(test_pattern_delay_seconds=0.05, claim_ahead=claim_ahead,
                                           overlap_settle=overlap_settle))
    assert agent.run(max_jobs=len(ids)) == len(ids)
    records = [stack.store.get(j) for j in ids]
    assert all(r["status"] == "succeeded" and r["attempts"] == 1 for r in records)
    assert [s.outcome for s in agent.stats].count("succeeded") == len(ids)
    assert stack.counts() == (0, 0)
    for stat in agent.stats:  # the phases are measured for the agent bench
        assert {"mark_running_ms", "inference_ms", "upload_ms", "record_ms", "ack_ms"} <= set(stat.timings)
