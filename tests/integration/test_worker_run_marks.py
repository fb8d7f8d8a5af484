"""The pipelined agent's run markers against SQS and DynamoDB on moto: when a job kills its worker, the job
settling beside it and the job claimed ahead of it keep their attempts; the killer's attempt is counted.

A worker death is played by freezing the agent where the kill would land (the killer's run and the neighbour's
upload wait on an event) and then picking the jobs up again as another worker would after the redelivery.
"""

from __future__ import annotations

import threading

import pytest

from fleetdev.worker_support import Stack, eventually, make_agent, run_in_thread
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.attempts import RUN_FINISHED, RUN_PENDING
from runtime.worker.outputs import OutputUploader

WAIT = 30.0  # generous: a loaded 2-core machine


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


class Killer(TestPatternBackend):
    """The job with prompt "kill" never returns until ``release`` is set (the worker is dead by then)."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__(delay_seconds=0.05)
        self.release = release

    def run(self, ctx):
        if ctx.job.inputs.prompt == "kill":
            self.release.wait(WAIT * 2)
        return super().run(ctx)


class StuckUpload(OutputUploader):
    """The upload of ``job_id`` waits for ``release``: its settle is cut off by the worker's death."""

    def __init__(self, inner: OutputUploader, release: threading.Event) -> None:
        self.__dict__.update(inner.__dict__)
        self.release, self.job_id = release, None

    def upload(self, job_id, *args, **kwargs):
        if job_id == self.job_id:
            self.release.wait(WAIT * 2)
        return super().upload(job_id, *args, **kwargs)


def _began(stack: Stack, job_id: str) -> bool:
    record = stack.store.get(job_id)
    return record["status"] == "running" and record.get(RUN_PENDING) != record.get("lease")


def test_the_job_settling_beside_a_worker_killer_keeps_its_attempt(stack):
    neighbour = stack.submit(prompt="neighbour", width=64, height=64, seed=1)
    killer = stack.submit(prompt="kill", width=64, height=64, seed=2)
    release = threading.Event()
    uploader = StuckUpload(stack.uploader(), release)
    uploader.job_id = neighbour
    agent = make_agent(stack, stack.config(), backend=Killer(release), uploader=uploader)
    thread = run_in_thread(agent, max_jobs=2)
    try:
        eventually(lambda: stack.store.get(neighbour).get(RUN_FINISHED) == 1, WAIT, "the neighbour's run finished")
        eventually(lambda: _began(stack, killer), WAIT, "the killer's run began")
        assert stack.store.get(neighbour)["status"] == "running"  # its settle is cut off: the worker dies now
        again = stack.store.attempts.start_attempt(neighbour, "i-other", 2, 30)  # redelivered to another worker
        assert (again.number, again.lease) == (1, 2)
        assert stack.store.attempts.start_attempt(killer, "i-other", 2, 30).number == 2
    finally:
        release.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    # the frozen worker's late writes are fenced out: the record still names the other worker's attempts
    for job_id in (neighbour, killer):
        record = stack.store.get(job_id)
        assert record["status"] == "running" and record["worker_id"] == "i-other", record
    assert stack.store.get(neighbour)["handbacks"] == 1 and not stack.store.get(killer).get("handbacks")


def test_the_job_claimed_ahead_of_a_worker_killer_keeps_its_attempt(stack):
    first = stack.submit(prompt="first", width=64, height=64, seed=1)  # gives the claim-ahead its run estimate
    killer = stack.submit(prompt="kill", width=64, height=64, seed=2)
    after = stack.submit(prompt="after", width=64, height=64, seed=3)
    release = threading.Event()
    agent = make_agent(stack, stack.config(), backend=Killer(release))
    thread = run_in_thread(agent, max_jobs=3)
    try:
        eventually(lambda: _began(stack, killer), WAIT, "the killer's run began")
        # the estimate (one 50 ms run) says the killer ends soon: the next job is claimed ahead, pending
        eventually(lambda: stack.store.get(after).get(RUN_PENDING) == 1, WAIT, "the next job claimed ahead")
        assert stack.store.get(after)["attempts"] == 1
        retried = stack.store.attempts.start_attempt(after, "i-other", 2, 30)
        assert (retried.number, retried.lease) == (1, 2)  # the attempt it never ran is not counted
        assert stack.store.attempts.start_attempt(killer, "i-other", 2, 30).number == 2
    finally:
        release.set()
        thread.join(WAIT)
    assert not thread.is_alive()
    assert stack.store.get(first)["status"] == "succeeded" and stack.store.get(first)["attempts"] == 1
    assert stack.store.get(after)["worker_id"] == "i-other"


def test_with_both_off_nothing_is_marked(stack):
    ids = [stack.submit(prompt=f"j{i}", width=64, height=64, seed=i) for i in range(3)]
    agent = make_agent(stack, stack.config(claim_ahead=False, overlap_settle=False))
    assert agent.run(max_jobs=len(ids)) == len(ids)
    for job_id in ids:
        record = stack.store.get(job_id)
        assert record["status"] == "succeeded" and record["attempts"] == 1
        assert RUN_PENDING not in record and RUN_FINISHED not in record
