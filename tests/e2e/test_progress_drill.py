"""Issue 38's drill over local mode: a client follows a job's events with its cursor (genai_fleet_client
``Client.follow``, long-polling GET /v1/jobs/{id}/events) while the worker running the job is killed (SIGKILL: no
hand-back, no flush). The job's lease runs out, the other worker retries it; the client sees the retry's progress
after the first attempt's, every event once, in cursor order, ending with the final status, and a fresh read
from the start returns exactly what it saw (nothing lost)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from genai_fleet_client import Client
from tests.e2e._helpers import store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_client_following_the_events_sees_the_retry_after_a_worker_kill(start_platform) -> None:
    platform = start_platform(test_pattern_delay_seconds=6.0, visibility_timeout_seconds=4)
    job_id = platform.ledger.submit(width=64, height=64, seed=1, steps=30)["id"]
    seen: list[dict[str, Any]] = []
    errors: list[BaseException] = []

    def follow() -> None:
        try:
            with Client(platform.api_key, platform.api_url) as client:
                seen.extend(client.follow(job_id, wait_s=5))
        except BaseException as exc:  # noqa: BLE001 - reported by the test's thread
            errors.append(exc)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    wait_until(lambda: any(e.get("stage") == "running" and e.get("percent", 0) >= 10 for e in seen), 40,
               "the client to see the first attempt's progress")
    owner = store(platform).get(job_id)["worker_id"]
    victim = next(w for w in platform.workers if w.instance_id == owner)
    victim.process.kill()  # SIGKILL mid-run: the attempt's last events may never be written

    follower.join(120)
    assert not follower.is_alive() and not errors, errors
    cursors = [e["cursor"] for e in seen]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)  # in order, none repeated
    with Client(platform.api_key, platform.api_url) as client:
        assert list(client.follow(job_id, wait_s=0)) == seen  # none lost
    assert seen[0]["status"] == "queued" and seen[-1]["status"] == "succeeded"
    attempts = [e["attempt"] for e in seen[1:-1]]
    assert attempts == sorted(attempts) and set(attempts) == {1, 2}, attempts
    retry = [e for e in seen if e["attempt"] == 2 and e["kind"] == "progress" and e["stage"] == "running"]
    percents = [e["percent"] for e in retry]
    assert len(percents) >= 5 and percents == sorted(percents) and percents[-1] == 100.0, retry
    print(f"\nprogress drill: {len(seen)} events, attempts {sorted(set(attempts))}, "
          f"{len(retry)} progress events of the retry")
