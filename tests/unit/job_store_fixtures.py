"""Shared by the job-record tests (attempts, run markers): a job spec and a clock the tests step; the
``clock`` and ``store`` fixtures (a JobStore on moto's DynamoDB) are in tests/unit/conftest.py."""

from __future__ import annotations

from runtime.jobs.store import JobStore, new_record

SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": None,
        "webhook_events_filter": ["completed"]}
OUT = [{"key": "outputs/o/1.png", "content_type": "image/png"}]


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def new_job(store: JobStore) -> str:
    record, _ = store.create(new_record(SPEC, owner="k1"))
    return record["job_id"]
