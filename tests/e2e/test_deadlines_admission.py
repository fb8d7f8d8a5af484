"""Issue 44, Done-when for points 1 and 2 (local mode, test-pattern backend): a job whose deadline passes in the
queue ends canceled/deadline without running (no worker yet: the sweeper cancels it, and the first worker drops
its message at the claim); a burst far beyond the fleet's throughput gets 429s with Retry-After and the estimate
while every accepted job starts before its deadline. Kept short: 1 s jobs, two workers, one burst."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e._helpers import store, wait_until

pytestmark = pytest.mark.e2e

JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "deadline", "width": 64, "height": 64}}
JOB_SECONDS = 1.0  # the test pattern's render time: two workers start about two jobs a second
ADMISSION_BOUND_S = 4  # GENAI_ADMISSION_MAX_WAIT_SECONDS: the API admits about 8 jobs ahead of a new one
DEADLINE_S = 20  # each burst job's deadline: five times the admission bound (the estimate is approximate)
BURST = 40  # jobs sent at once: five times what the bound admits, far beyond twice the fleet's throughput


def test_deadlines_and_admission_control_in_local_mode(start_platform) -> None:
    platform = start_platform(workers=0, test_pattern_delay_seconds=JOB_SECONDS,
                              worker_overrides={"batch_max_jobs": 1},
                              api_env={"GENAI_ADMISSION_MAX_WAIT_SECONDS": str(ADMISSION_BOUND_S)})
    s = store(platform)
    with httpx.Client(base_url=platform.api_url, timeout=30,
                      headers={"Authorization": f"Bearer {platform.api_key}"}) as client:
        # 1. No worker running: the job's deadline passes in the queue; the sweeper cancels it.
        expired = client.post("/v1/jobs", json={**JOB, "deadline_seconds": 2})
        assert expired.status_code == 202, expired.text
        expired_id = expired.json()["id"]
        record = wait_until(lambda: (r := s.get(expired_id)) and r["status"] == "canceled" and r, 30,
                            "the sweeper to cancel the expired job")
        assert record["cancel_reason"] == "deadline" and record["started_at"] is None and record["attempts"] == 0
        view = client.get(f"/v1/jobs/{expired_id}").json()
        assert view["cancel_reason"] == "deadline" and view["cost"]["usd"] == 0, view

        # 2. Two workers; the first claim of the expired job's message drops it without running it.
        platform.add_worker()
        platform.add_worker()
        sent_at = time.monotonic()
        answers = [client.post("/v1/jobs", json={**JOB, "deadline_seconds": DEADLINE_S}) for _ in range(BURST)]
        took = time.monotonic() - sent_at
        accepted = [a.json()["id"] for a in answers if a.status_code == 202]
        refused = [a for a in answers if a.status_code == 429]
        print(f"burst of {BURST} in {took:.1f} s: {len(accepted)} accepted, {len(refused)} refused (429)")
        assert len(accepted) + len(refused) == BURST, [a.text for a in answers if a.status_code not in (202, 429)]
        assert refused and accepted, (len(accepted), len(refused))
        for answer in refused:
            body = answer.json()
            assert body["type"].endswith("overloaded") and int(answer.headers["Retry-After"]) >= 1, body
            assert body["estimate"]["wait_seconds"] > ADMISSION_BOUND_S, body
        records = wait_until(lambda: (rs := [s.get(j) for j in accepted]) and all(
            r["status"] in ("succeeded", "failed", "canceled") for r in rs) and rs, 120, "the accepted jobs")
        waits = sorted(float(r["started_at"]) - float(r["created_at"]) for r in records if r.get("started_at"))
        print(f"accepted jobs' waits: max {waits[-1]:.2f} s, deadline {DEADLINE_S} s")
        assert all(r["status"] == "succeeded" for r in records), [(r["job_id"], r["status"]) for r in records]
        assert waits[-1] < DEADLINE_S
        assert s.get(expired_id)["status"] == "canceled" and s.get(expired_id)["started_at"] is None
        attrs = platform.aws("sqs").get_queue_attributes(
            QueueUrl=platform.resources.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "0")
