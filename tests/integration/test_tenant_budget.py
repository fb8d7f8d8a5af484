"""Issue 42, item 2: spend per tenant per day beside the quota counters, and a daily budget the API enforces like
the quota (429 with the budget and the spend). The API and a real agent on one moto stack."""

from __future__ import annotations

import httpx
import pytest

from fleetdev.local_server import LocalApiServer
from fleetdev.worker_support import Stack, make_agent
from runtime import metric_names as m
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app
from runtime.jobs.cost import job_cost
from runtime.jobs.spend import TenantSpend, utc_day

pytestmark = pytest.mark.integration

KEY, _ = generate_key("tenant")
JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "a cat", "width": 64, "height": 64}}
HOURLY, AVERAGE_S = 3.6, 5.0  # a job is expected to cost 0.005 USD; one of ~0.3 s costs ~0.0003
PRICING = {"on_demand_hourly": {"g5.xlarge": HOURLY}, "source": "test", "instance_type": "g5.xlarge"}


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def _api(stack: Stack, budget: float | None, quota: int | None = None) -> ApiConfig:
    return ApiConfig(job_table=stack.table, queue_url=stack.queue_url, api_keys=(KEY,), endpoint_url=stack.endpoint,
                     region="us-east-1", average_job_seconds=AVERAGE_S, hourly_usd=HOURLY, budget_usd_per_day=budget,
                     quota_per_day=quota)


def test_the_job_that_would_exceed_the_budget_is_refused_and_spend_frees_it(stack):
    app = build_app(_api(stack, budget=0.01, quota=3))  # a refusal by the budget gives its quota unit back
    with LocalApiServer(app) as server, httpx.Client(base_url=server.url, timeout=30,
                                                    headers={"x-api-key": KEY}) as client:
        first = [client.post("/v1/jobs", json=JOB) for _ in range(2)]
        refused = client.post("/v1/jobs", json=JOB)
        assert [r.status_code for r in first] == [202, 202]
        assert refused.status_code == 429, refused.text
        problem = refused.json()
        assert problem["type"].endswith("budget-exceeded") and problem["budget_usd"] == 0.01
        assert problem["spend_usd"] == 0 and problem["expected_usd"] == 0.005 and problem["committed_usd"] == 0.01
        assert int(refused.headers["retry-after"]) > 0

        agent = make_agent(stack, stack.config(pricing=PRICING))
        agent.run(max_jobs=2)
        records = [stack.store.get(r.json()["id"]) for r in first]
        assert all(r["status"] == "succeeded" for r in records)
        tenant = records[0]["owner"]
        spend = TenantSpend(stack.table, stack.ddb).read(tenant, utc_day(records[0]["created_at"]))
        spent = sum(job_cost(r["attempt_costs"])["usd"] for r in records)
        assert spend["usd"] == pytest.approx(spent, abs=1e-6) and spend["committed"] == pytest.approx(spent, abs=1e-6)
        assert spend["gpu_seconds"] == pytest.approx(sum(job_cost(r["attempt_costs"])["gpu_seconds"]
                                                         for r in records), abs=1e-3)
        # the reservations were given back when the jobs became final: what is left of the budget admits a job
        assert spent + 0.005 <= 0.01, spent
        assert client.post("/v1/jobs", json=JOB).status_code == 202
    tenant_metrics = [r for r in agent.metrics.records if m.TENANT_SPEND in r]
    assert len(tenant_metrics) == 2 and all(r[m.DIM_TENANT] == tenant for r in tenant_metrics)
    assert any([m.DIM_STACK, m.DIM_TENANT] in d["Dimensions"] for d in tenant_metrics[0]["_aws"]["CloudWatchMetrics"])


def test_without_a_budget_nothing_is_reserved(stack):
    with LocalApiServer(build_app(_api(stack, budget=None))) as server, \
            httpx.Client(base_url=server.url, timeout=30, headers={"x-api-key": KEY}) as client:
        job = client.post("/v1/jobs", json=JOB).json()
    record = stack.store.get(job["id"])
    assert "budget_reserved_usd" not in record and TenantSpend(stack.table, stack.ddb).read(
        record["owner"], utc_day(record["created_at"]))["committed"] == 0


def test_a_reservation_over_the_limit_is_refused_and_a_release_gives_it_back(aws_clients, job_table):
    spend = TenantSpend(job_table, aws_clients("dynamodb"))
    assert spend.reserve("t", "2026-01-01", 0.6, budget_usd=1.0)
    assert not spend.reserve("t", "2026-01-01", 0.6, budget_usd=1.0)
    assert not spend.reserve("t", "2026-01-01", 2.0, budget_usd=1.0)
    spend.release("t", "2026-01-01", 0.6)
    assert spend.reserve("t", "2026-01-01", 0.6, budget_usd=1.0)
    spend.charge("t", "2026-01-01", 0.25, 25.0, reserved_usd=0.6)
    assert spend.read("t", "2026-01-01") == {"usd": 0.25, "gpu_seconds": 25.0, "committed": pytest.approx(0.25)}
