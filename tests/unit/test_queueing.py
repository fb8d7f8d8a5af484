"""Issue 42, item 3: the queueing estimates both the API and the planner may import (runtime/queueing.py)."""

from __future__ import annotations

from runtime.queueing import next_start_seconds


def test_a_free_worker_starts_the_job_at_once():
    assert next_start_seconds(ahead=0, busy=0, servers=2, service_s=3.0) == 0.0
    assert next_start_seconds(ahead=1, busy=0, servers=2, service_s=3.0) == 0.0


def test_jobs_ahead_wait_for_the_busy_workers_in_turn():
    # two workers each half way through a 2 s job, six jobs ahead: free at 1, 1, 3, 3, 5, 5 -> ours at 7
    assert next_start_seconds(ahead=6, busy=2, servers=2, service_s=2.0) == 7.0
    assert next_start_seconds(ahead=6, busy=2, servers=2, service_s=2.0, residual_s=0.0) == 6.0
    assert next_start_seconds(ahead=1, busy=1, servers=1, service_s=4.0, residual_s=4.0) == 8.0


def test_never_fewer_servers_than_busy_workers():
    assert next_start_seconds(ahead=0, busy=3, servers=1, service_s=2.0) == 1.0

