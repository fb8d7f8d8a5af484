"""Helpers shared by the end-to-end tests: drill reports and waiting on job records."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from fleetdev.local.audit import Report
from fleetdev.local.platform import LocalPlatform
from runtime.jobs.attempts import RUN_FINISHED, RUN_PENDING
from runtime.jobs.store import JobStore

REPORTS: list[str] = []  # printed in the terminal summary by conftest.py


def record(title: str, report: Report) -> None:
    line = report.line(title)
    print(line)
    REPORTS.append(line)
    for problem in report.problems:
        print(f"  {problem}")


def store(platform: LocalPlatform) -> JobStore:
    return JobStore(platform.resources.job_table, platform.aws("dynamodb"))


def wait_until(probe: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def run_began(rec: dict[str, Any]) -> float:
    """When the record's current attempt's backend run began: at its claim (``last_started_at``), or for one
    claimed ahead when the worker marked it (``run_began_at``, only ever later than its claim)."""
    return max(float(rec.get("last_started_at") or rec.get("started_at") or 0), float(rec.get("run_began_at") or 0))


def on_backend(rec: dict[str, Any] | None, instance_id: str) -> bool:
    """The record's attempt is on that worker's backend now: running there, its run begun and not finished."""
    if not rec or rec["status"] != "running" or rec.get("worker_id") != instance_id:
        return False
    return rec.get("lease") not in (rec.get(RUN_PENDING), rec.get(RUN_FINISHED))


def running_on(platform: LocalPlatform, job_ids: list[str], instance_id: str,
               started_within: float | None = None) -> str | None:
    """A job id running on the worker with ``instance_id`` right now (and, with ``started_within``, one
    whose run began at most that many seconds ago, so it is sure to be still running a moment later)."""
    s = store(platform)
    for job_id in job_ids:
        rec = s.get(job_id)
        if on_backend(rec, instance_id) and (started_within is None or time.time() - run_began(rec) <= started_within):
            return job_id
    return None


def run_began_on(platform: LocalPlatform, job_ids: list[str], instance_id: str,
                 within: float) -> Callable[[], str | None]:
    """A probe for ``wait_until``: a job whose backend run began on that worker at most ``within`` seconds before
    the look that found it (``run_began``). Jobs seen final are not read again, so each look stays short."""
    s = store(platform)
    final: set[str] = set()

    def probe() -> str | None:
        for job_id in job_ids:
            if job_id in final:
                continue
            rec = s.get(job_id)
            if rec and rec["status"] in ("succeeded", "failed", "canceled"):
                final.add(job_id)
            elif on_backend(rec, instance_id) and time.time() - run_began(rec) <= within:
                return job_id
        return None

    return probe


def assert_clean(report: Report, submitted: int) -> None:
    assert report.submitted == submitted, report.line()
    assert report.lost == 0, report.problems
    assert report.duplicated == 0, report.problems
    assert report.extra_jobs == 0, report.line()
    assert report.failed == 0, report.problems
    assert report.succeeded == submitted, report.line()
    assert not report.dlq, report.line()
