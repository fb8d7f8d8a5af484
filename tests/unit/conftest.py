"""Fixtures of the job-record tests (test_job_attempts, test_job_run_marks); a module's own fixture of the
same name wins over these."""

from __future__ import annotations

import pytest

from runtime.jobs.store import JobStore
from tests.unit.job_store_fixtures import Clock


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def store(aws_clients, job_table, clock):
    return JobStore(job_table, aws_clients("dynamodb"), clock=clock)
