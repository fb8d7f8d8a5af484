"""Drill: SIGKILL of a worker in the middle of a batch (dynamic batching, runtime.worker.batching).

Two local-mode agents batch up to four compatible test-pattern jobs per backend call. Worker-0 is killed
while a batch of several jobs runs on it: no hand-back, no cleanup. Every job of that batch has its own
attempt and lease in its record, so each one's lease runs out and worker-1 runs it again. The drill prints
``jobs submitted / succeeded / failed / duplicated`` and asserts that every job ended final once, none was
lost, and each job of the killed batch counts the attempt that died in its own record.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e._helpers import assert_clean, record, store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BATCH = {"batch_max_jobs": 4, "batch_wait_ms": 1500, "prefetch_jobs": 4}


def _batch_running_on(platform, ids: list[str], instance_id: str) -> list[str] | None:
    """The jobs running on ``instance_id`` now when they are several started together (one batch)."""
    s, now = store(platform), time.time()
    running = []
    for job_id in ids:
        rec = s.get(job_id) or {}
        started = float(rec.get("last_started_at") or rec.get("started_at") or 0)
        if rec.get("status") == "running" and rec.get("worker_id") == instance_id and now - started <= 1.5:
            running.append(job_id)
    return running if len(running) >= 2 else None


def test_sigkill_one_worker_during_a_batch_of_several_jobs(start_platform) -> None:
    platform = start_platform(test_pattern_delay_seconds=4.0, visibility_timeout_seconds=4, worker_overrides=BATCH)
    w0, w1 = platform.workers
    ids = platform.ledger.submit_batch(12)
    victims = wait_until(lambda: _batch_running_on(platform, ids, w0.instance_id), 30,
                         "a batch of several jobs that just started on worker-0")

    w0.process.kill()  # SIGKILL mid-batch: every job of the batch has to wait for its own lease to run out

    views = platform.ledger.wait_final(ids, timeout=90)
    report = platform.ledger.report(ids)
    record(f"drill SIGKILL worker mid-batch ({len(victims)} jobs in the batch)", report)
    assert_clean(report, submitted=12)
    assert all(v["status"] == "succeeded" for v in views.values())
    for job_id in victims:
        victim = store(platform).get(job_id)
        assert victim["worker_id"] == w1.instance_id, victim
        assert victim["attempts"] >= 2, victim  # the attempt that died counted in its own record
