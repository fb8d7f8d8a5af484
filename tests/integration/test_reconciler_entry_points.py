"""The Lambda entry points of the dead-letter consumer and the lease sweeper, executed as Lambda runs them
(issue 33, finding 5): a fresh Python process imports the handler the component names, builds its own store
from the function's environment (here: moto) and is called with an SQS / scheduled event. A record it cannot
reconcile comes back in ``batchItemFailures`` (the event source retries it); one that is no job message does not."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time

import pytest

from runtime.jobs.store import JobStore, new_record
from runtime.queues.base import QueueMessage
from tests.unit.job_store_fixtures import SPEC, Clock

pytestmark = pytest.mark.integration

# The handler strings components/job_events.py gives the functions (tests/unit/test_job_events.py checks them).
DEAD_LETTERS = "runtime.functions.reconciler.dead_letter_handler"
SWEEPER = "runtime.functions.reconciler.sweep_handler"

_INVOKE = """
import importlib, json, sys
module, _, name = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module), name)
print(json.dumps(handler(json.loads(sys.stdin.read()), None)))
"""


def _invoke(handler: str, event: dict, env: dict[str, str]) -> dict:
    """One cold invocation in its own process, as the Lambda runtime imports ``module.function``."""
    done = subprocess.run([sys.executable, "-c", _INVOKE, handler], input=json.dumps(event), capture_output=True,
                          text=True, timeout=120, env={**os.environ, **env}, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _env(moto_endpoint: str, job_table: str, **extra: str) -> dict[str, str]:
    return {"GENAI_JOB_TABLE": job_table, "GENAI_AWS_ENDPOINT_URL": moto_endpoint, "AWS_REGION": "us-east-1",
            **extra}


def test_the_handlers_the_component_names_exist():
    for handler in (DEAD_LETTERS, SWEEPER):
        module, _, name = handler.rpartition(".")
        assert callable(getattr(importlib.import_module(module), name))


def test_dead_letter_entry_point_fails_the_job_and_never_retries_a_body_that_is_no_job(
        moto_endpoint, job_table, aws_clients):
    store = JobStore(job_table, aws_clients("dynamodb"))
    job_id = store.create(new_record(SPEC, owner="k1"))[0]["job_id"]
    dead = {"messageId": "m-dead", "body": QueueMessage(job_id=job_id, job=SPEC).to_json(),
            "attributes": {"ApproximateReceiveCount": "4"}}
    garbage = {"messageId": "m-garbage", "body": "not a job message", "attributes": {}}
    result = _invoke(DEAD_LETTERS, {"Records": [dead, garbage]}, _env(moto_endpoint, job_table))
    assert result == {"batchItemFailures": [], "outcomes": ["failed", "bad-body"]}
    record = store.get(job_id)
    assert record["status"] == "failed" and record["error"]["code"] == "dead-lettered"
    assert "after 4 receives" in record["error"]["message"]
    again = _invoke(DEAD_LETTERS, {"Records": [dead]}, _env(moto_endpoint, job_table))
    assert again == {"batchItemFailures": [], "outcomes": ["final-already"]}


def test_dead_letters_that_cannot_be_reconciled_come_back_as_batch_item_failures(moto_endpoint, job_table,
                                                                               aws_clients):
    """The table cannot be read (here: it does not exist): each record is reported, so SQS keeps and retries it
    instead of deleting a dead letter whose job would then stay running forever."""
    store = JobStore(job_table, aws_clients("dynamodb"))
    ids = [store.create(new_record(SPEC, owner="k1"))[0]["job_id"] for _ in range(2)]
    records = [{"messageId": f"m-{i}", "body": QueueMessage(job_id=job_id, job=SPEC).to_json(), "attributes": {}}
               for i, job_id in enumerate(ids)]
    result = _invoke(DEAD_LETTERS, {"Records": records}, _env(moto_endpoint, f"{job_table}-missing"))
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-0"}, {"itemIdentifier": "m-1"}], "outcomes": []}
    assert [store.get(job_id)["status"] for job_id in ids] == ["queued", "queued"]


def test_sweep_entry_point_requeues_or_fails_expired_leases(moto_endpoint, job_table, aws_clients):
    past = Clock(time.time() - 3600)  # attempts started an hour ago with 30 s leases
    store = JobStore(job_table, aws_clients("dynamodb"), clock=past)
    retry = store.create(new_record(SPEC, owner="k1"))[0]["job_id"]
    store.attempts.start_attempt(retry, "w-dead", max_attempts=2, lease_seconds=30)
    last = store.create(new_record(SPEC, owner="k1"))[0]["job_id"]
    first = store.attempts.start_attempt(last, "w-1", max_attempts=2, lease_seconds=30)
    assert store.attempts.fail_attempt(last, first.lease, first.number, {"code": "backend-error", "message": "x"})
    assert store.attempts.start_attempt(last, "w-dead", max_attempts=2, lease_seconds=30).number == 2
    env = _env(moto_endpoint, job_table, GENAI_MAX_ATTEMPTS="2", GENAI_STALE_LEASE_SECONDS="300")
    assert _invoke(SWEEPER, {}, env) == {"expired": 2, "requeued": 1, "failed": 1, "deadline_canceled": 0}
    assert store.get(retry)["status"] == "queued"
    assert store.get(last)["status"] == "failed"
    assert _invoke(SWEEPER, {}, env) == {"expired": 0, "requeued": 0, "failed": 0, "deadline_canceled": 0}


def test_sweep_entry_point_cancels_queued_jobs_past_their_deadline(moto_endpoint, job_table, aws_clients):
    """Issue 44: the scheduled sweep also cancels never-started queued jobs whose deadline passed (reason deadline)."""
    from runtime.jobs.deadlines import deadline_fields

    store = JobStore(job_table, aws_clients("dynamodb"))
    now = time.time()
    late, fresh = (new_record(SPEC, owner="k1", now=now - 120), new_record(SPEC, owner="k1", now=now))
    late.update(deadline_fields(now - 120, 60))
    fresh.update(deadline_fields(now, 600))
    late_id, fresh_id = store.create(late)[0]["job_id"], store.create(fresh)[0]["job_id"]
    env = _env(moto_endpoint, job_table)
    assert _invoke(SWEEPER, {}, env)["deadline_canceled"] == 1
    assert store.get(late_id)["status"] == "canceled" and store.get(late_id)["cancel_reason"] == "deadline"
    assert store.get(fresh_id)["status"] == "queued"
