"""Issue 43, item 5 in local mode: the platform mints an operator key beside its tenant key, and
``GET /v1/fleet`` answers it with the SQS queue's depth and oldest age while a tenant key gets 403."""

from __future__ import annotations

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse", "width": 64, "height": 64}}


def test_local_mode_serves_get_fleet_to_its_operator_key_only(start_platform):
    platform = start_platform(workers=0)  # nothing takes the job: it waits in the queue
    tenant = {"Authorization": f"Bearer {platform.api_key}"}
    operator = {"Authorization": f"Bearer {platform.operator_key}"}
    assert httpx.post(f"{platform.api_url}/v1/jobs", json=JOB, headers=tenant, timeout=10).status_code == 202
    refused = httpx.get(f"{platform.api_url}/v1/fleet", headers=tenant, timeout=10)
    assert refused.status_code == 403 and refused.json()["type"].endswith("/forbidden-scope")
    fleet = httpx.get(f"{platform.api_url}/v1/fleet", headers=operator, timeout=10)
    assert fleet.status_code == 200, fleet.text
    [queue] = fleet.json()["queues"]
    assert queue["name"] == "jobs" and queue["depth"] == 1
