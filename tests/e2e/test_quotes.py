"""Issue 42, Done-when (local mode, test-pattern backend): a quote predicts the measured wait of the next job within
max(2 s, 50 %) on an idle and on a busy fleet. The measured wait is the record's: from its creation to the
claim of its first attempt (``started_at``)."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.e2e._helpers import store, wait_until

pytestmark = pytest.mark.e2e

JOB = {"model": "sd15", "task": "txt2img", "inputs": {"prompt": "quote", "width": 64, "height": 64}}
DEPTH_CACHE_S = 5.2  # the API caches the queue's depth for 5 s (runtime/queues/sqs_producer.py)


def _quote_then_submit(client: httpx.Client, platform) -> tuple[float, float, dict]:
    quote = client.post("/v1/quotes", json=JOB)
    assert quote.status_code == 200, quote.text
    job_id = client.post("/v1/jobs", json=JOB).json()["id"]
    s = store(platform)
    record = wait_until(lambda: (r := s.get(job_id)) and r.get("started_at") and r, 120, f"job {job_id} to start")
    measured = float(record["started_at"]) - float(record["created_at"])
    return quote.json()["wait_seconds"]["expected"], measured, quote.json()


def test_a_quote_predicts_the_next_jobs_wait_on_an_idle_and_a_busy_fleet(start_platform) -> None:
    platform = start_platform(test_pattern_delay_seconds=2.0, worker_overrides={"batch_max_jobs": 1})
    with httpx.Client(base_url=platform.api_url, timeout=30,
                      headers={"Authorization": f"Bearer {platform.api_key}"}) as client:
        predicted, measured, quote = _quote_then_submit(client, platform)
        print(f"idle fleet: predicted {predicted:.2f} s, measured {measured:.2f} s ({quote['fleet']})")
        assert abs(predicted - measured) <= max(2.0, 0.5 * measured), quote
        quoted_at = time.monotonic()

        backlog = [client.post("/v1/jobs", json=JOB).json()["id"] for _ in range(8)]
        s = store(platform)
        wait_until(lambda: sum(1 for j in backlog if (s.get(j) or {}).get("status") == "running") >= 2, 30,
                   "both workers busy")
        time.sleep(max(0.0, DEPTH_CACHE_S - (time.monotonic() - quoted_at)))
        predicted, measured, quote = _quote_then_submit(client, platform)
        print(f"busy fleet: predicted {predicted:.2f} s, measured {measured:.2f} s ({quote['fleet']})")
        assert quote["fleet"]["jobs_ahead"] > 0, quote
        assert abs(predicted - measured) <= max(2.0, 0.5 * measured), quote
