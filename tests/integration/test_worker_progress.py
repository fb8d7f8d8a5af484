"""Issue 38 through the agent: a 30-step job's events (running, loading-model, progress per 10 %, 100 % before
uploading, the final status after them), and a retried job's two attempts in order, each with its number."""

from __future__ import annotations

import pytest

from fleetdev.worker_support import CDN, Stack, make_agent
from runtime.backends.base import JobInterrupted
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.events import FINAL_CURSOR, events_after
from runtime.jobs.output_links import OutputLinks
from runtime.worker.progress_reporter import ProgressReporter

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def _follow(stack: Stack, job_id: str) -> list[dict]:
    """What a client sees reading the events page by page with its cursor (stored events, then the record)."""
    seen: list[dict] = []
    cursor = None
    while cursor != FINAL_CURSOR:
        stored = stack.events.after(job_id, cursor, limit=3)  # small pages: the cursor is used for real
        page = events_after(stack.store.get(job_id), stored, cursor, OutputLinks(CDN), limit=3)
        if not page:
            break
        seen.extend(page)
        cursor = page[-1]["cursor"]
    return seen


def test_a_30_step_job_reports_monotone_progress_ending_at_100_before_completed(stack):
    reporter = ProgressReporter(stack.events, interval_s=0.05)
    agent = make_agent(stack, stack.config(test_pattern_delay_seconds=0.3), progress=reporter)
    job_id = stack.submit(prompt="a cat", width=64, height=64, seed=1, steps=30)
    agent.run(max_jobs=1)
    events = _follow(stack, job_id)
    kinds = [(e["kind"], e.get("status") or e.get("stage")) for e in events]
    assert kinds[:3] == [("status", "queued"), ("status", "running"), ("progress", "loading-model")], kinds
    assert kinds[-2:] == [("progress", "uploading"), ("status", "succeeded")], kinds
    running = [e for e in events if e["kind"] == "progress" and e["stage"] == "running"]
    assert len(running) >= 5
    percents = [e["percent"] for e in running]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert {e["attempt"] for e in events[1:-1]} == {1}
    assert events[-1]["outputs"]
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)


class InterruptedOnce(TestPatternBackend):
    """The first attempt fails half-way through its steps (a crash of the backend): the job is retried."""

    def __init__(self) -> None:
        super().__init__(delay_seconds=0.05)
        self.failed = False

    def run(self, ctx):
        if not self.failed:
            self.failed = True
            for step in range(1, 16):
                ctx.report(step=step, steps=30)
            raise JobInterrupted(f"ComfyUI interrupted prompt {ctx.backend_id}")
        return super().run(ctx)


def test_a_retry_follows_the_first_attempt_in_cursor_order_each_event_with_its_attempt(stack):
    reporter = ProgressReporter(stack.events, interval_s=0.05)
    agent = make_agent(stack, stack.config(), backend=InterruptedOnce(), progress=reporter)
    job_id = stack.submit(prompt="a cat", width=64, height=64, seed=1, steps=30)
    agent.run(max_jobs=2)
    events = _follow(stack, job_id)
    assert events[-1]["status"] == "succeeded"
    attempts = [e["attempt"] for e in events[1:-1]]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2}
    first = [e["percent"] for e in events if e["kind"] == "progress" and e["attempt"] == 1 and "percent" in e]
    second = [e["percent"] for e in events if e["kind"] == "progress" and e["attempt"] == 2 and e["stage"] == "running"]
    assert first[-1] == 50.0 and second[-1] == 100.0


def test_every_event_of_the_attempt_is_stored_before_its_final_write(stack):
    """A reader that sees the final status must have seen every event before it: the settlement closes the attempt
    (writing what is left) before ``mark_succeeded``. The flush thread is too slow here to do it by chance."""
    reporter = ProgressReporter(stack.events, interval_s=60)
    agent = make_agent(stack, stack.config(), progress=reporter)
    job_id = stack.submit(prompt="a cat", width=64, height=64, seed=1, steps=30)
    at_final: list[list[str]] = []
    final_write = stack.store.mark_succeeded

    def watched(*args, **kwargs):
        at_final.append([e.get("stage") or e.get("status") for e in stack.events.after(job_id, None)])
        return final_write(*args, **kwargs)

    stack.store.mark_succeeded = watched
    agent.run(max_jobs=1)
    assert stack.store.get(job_id)["status"] == "succeeded"
    assert at_final and at_final[0][0] == "running" and at_final[0][-1] == "uploading", at_final


def _marked(stack: Stack, job_id: str) -> list[dict]:
    """The job's stored event items the worker marked for the progress webhook (issue 38)."""
    resp = stack.events.client.query(TableName=stack.events.table_name, KeyConditionExpression="job_id = :j",
                                     ExpressionAttributeValues={":j": {"S": job_id}}, ConsistentRead=True)
    return [item for item in resp["Items"] if item.get("notify", {}).get("S") == "progress"]


def test_only_a_job_whose_webhook_subscribes_to_progress_gets_marked_events(stack):
    reporter = ProgressReporter(stack.events, interval_s=0.05)
    agent = make_agent(stack, stack.config(test_pattern_delay_seconds=0.3), progress=reporter)
    wants = stack.submit(webhook="http://127.0.0.1:9/h", webhook_events=["progress", "completed"],
                         prompt="a cat", width=64, height=64, seed=1, steps=30)
    plain = stack.submit(webhook="http://127.0.0.1:9/h", prompt="a cat", width=64, height=64, seed=1, steps=30)
    agent.run(max_jobs=2)
    marked = _marked(stack, wants)
    assert marked and all(item["kind"]["S"] == "progress" for item in marked)
    assert _marked(stack, plain) == []
