"""Issue 42, item 1: every settled attempt records its GPU-seconds and dollars on the job record, failed and
handed-back attempts included, and the public view sums them into ``cost``. The real agent against moto."""

from __future__ import annotations

import pytest

from fleetdev.worker_support import CDN, Stack, eventually, make_agent, run_in_thread
from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.views import public_view

pytestmark = pytest.mark.integration

HOURLY = 1.006  # g5.xlarge on-demand, us-east-1 (policies/prices.json)
PRICING = {"on_demand_hourly": {"g5.xlarge": HOURLY}, "source": "test table", "instance_type": "g5.xlarge",
           "purchase_option": "on-demand"}


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


class FailsFirst(TestPatternBackend):
    """The first ``times`` runs fail with a transient backend error after the delay; then it renders."""

    def __init__(self, times: int, delay: float) -> None:
        super().__init__(delay_seconds=delay)
        self.times = times

    def run(self, ctx):
        self._stand_in_for_inference(ctx)
        if self.times > 0:
            self.times -= 1
            raise BackendError("CUDA error: an illegal memory access was encountered")
        return self._render(ctx)


def test_a_retried_job_costs_both_attempts_at_the_configured_price(stack):
    agent = make_agent(stack, stack.config(pricing=PRICING), backend=FailsFirst(times=1, delay=0.2))
    job_id = stack.submit()
    agent.run(max_jobs=2)
    record = stack.store.get(job_id)
    assert record["status"] == "succeeded" and record["attempts"] == 2, record
    entries = record["attempt_costs"]
    assert [(e["attempt"], e["outcome"]) for e in entries] == [(1, "retrying"), (2, "succeeded")]
    for e in entries:
        assert (e["instance_type"], e["purchase_option"], e["hourly_usd"]) == ("g5.xlarge", "on-demand", HOURLY)
        assert e["phases"]["inference"] >= 0.2 and e["gpu_seconds"] >= e["phases"]["inference"]
        assert e["usd"] == pytest.approx(e["gpu_seconds"] * HOURLY / 3600, abs=1e-6)
        assert "test table" in e["price_source"]
    assert entries[1]["phases"]["upload"] > 0 and entries[0]["phases"]["upload"] == 0
    cost = public_view(record, "", OutputLinks(CDN))["cost"]
    assert cost["gpu_seconds"] == pytest.approx(sum(e["gpu_seconds"] for e in entries), abs=1e-3)
    assert cost["usd"] == pytest.approx(cost["gpu_seconds"] * HOURLY / 3600, abs=2e-6)
    assert [a["outcome"] for a in cost["breakdown"]["attempts"]] == ["retrying", "succeeded"]


def test_the_last_failed_attempt_is_in_the_final_record(stack):
    agent = make_agent(stack, stack.config(pricing=PRICING), backend=FailsFirst(times=99, delay=0.05))
    job_id = stack.submit()
    agent.run(idle_exit_seconds=1.5)
    record = stack.store.get(job_id)
    assert record["status"] == "failed", record
    assert [e["outcome"] for e in record["attempt_costs"]] == ["retrying", "failed"]


def test_a_handed_back_attempt_counts(stack):
    agent = make_agent(stack, stack.config(pricing=PRICING), backend=TestPatternBackend(delay_seconds=5))
    job_id = stack.submit()
    thread = run_in_thread(agent, max_jobs=1)
    eventually(lambda: (stack.store.get(job_id) or {}).get("status") == "running", what="the job running")
    agent.stop()
    thread.join(timeout=20)
    record = stack.store.get(job_id)
    assert record["status"] == "queued" and [e["outcome"] for e in record["attempt_costs"]] == ["handed-back"]
    assert public_view(record, "", OutputLinks(CDN))["cost"]["usd"] > 0


def test_idle_time_is_reported_as_fleet_overhead_not_in_jobs(stack):
    agent = make_agent(stack, stack.config(pricing=PRICING))
    agent.recorder.emit_busy(force=True)
    records = [r for r in agent.metrics.records if m.OVERHEAD_SECONDS in r]
    assert records and records[-1][m.DIM_KIND] == "idle" and records[-1]["instance_type"] == "g5.xlarge"
    assert records[-1][m.OVERHEAD_COST] == pytest.approx(records[-1][m.OVERHEAD_SECONDS] * HOURLY / 3600, abs=1e-6)
