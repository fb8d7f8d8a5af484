"""``Prefer: wait`` and long jobs (issue 36, point 3): a job whose shape is known to run longer than the wait (a
video of minutes) is answered 202 with its status URL at once, without holding the request; a shorter one still
waits. Video shapes differ by frame count (the pacer's key once read a ``num_frames`` input nobody sends)."""

from __future__ import annotations

import json
import time

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.sync_wait import WaitPacer
from runtime.jobs.schema import validate_job
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue

KEY, RECORD = generate_key("long")
VIDEO = {"model": "sdxl-base-1.0", "task": "txt2video", "inputs": {"prompt": "a wave", "frames": 48, "fps": 12}}


def _finished(body: dict, seconds: float) -> dict:
    return {"model": body["model"], "spec": validate_job(body), "status": "succeeded", "last_started_at": 1000.0,
            "completed_at": 1000.0 + seconds}


@pytest.fixture
def app(aws_clients, job_table):
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        time.sleep(seconds)

    api = ApiApp(JobStore(job_table, aws_clients("dynamodb")), InMemoryQueue(), ApiOptions(auth_mode="api-key"),
                 keys=StaticKeyStore({RECORD.key_id: RECORD}), sleep=sleep)
    api.slept = slept
    return api


def _post(app: ApiApp, body: dict, wait: int = 20):
    return app.handle(Request("POST", "/v1/jobs", body=json.dumps(body).encode(), headers={
        "authorization": f"Bearer {KEY}", "content-type": "application/json", "prefer": f"wait={wait}"}))


def test_a_job_expected_to_outlast_the_wait_is_answered_202_at_once(app):
    app.pacer.observe(_finished(VIDEO, 90.0))  # this shape ran 90 s last time
    resp = _post(app, VIDEO, wait=20)
    assert resp.status == 202 and resp.body["status"] == "queued" and resp.body["urls"]["get"]
    assert app.slept == []  # no read was waited for
    assert "Preference-Applied" not in resp.headers and resp.headers["Retry-After"] == "90"


def test_a_job_expected_within_the_wait_still_waits(app):
    app.pacer.observe(_finished(VIDEO, 0.5))
    resp = _post(app, VIDEO, wait=1)
    assert resp.status == 202 and app.slept  # it waited (nobody ran the job) and then answered 202
    assert resp.headers["Preference-Applied"] == "wait=1"


def test_video_shapes_are_told_apart_by_frame_count():
    pacer = WaitPacer()
    pacer.observe(_finished(VIDEO, 90.0))
    short = {**VIDEO, "inputs": {**VIDEO["inputs"], "frames": 8}}
    model_only = pacer.expected({"model": "other", "spec": validate_job({**short, "model": "other"})})
    assert model_only is None
    assert pacer.expected({"model": VIDEO["model"], "spec": validate_job(VIDEO)}) == 90.0
    pacer.observe(_finished(short, 10.0))
    assert pacer.expected({"model": VIDEO["model"], "spec": validate_job(short)}) == 10.0
    assert pacer.expected({"model": VIDEO["model"], "spec": validate_job(VIDEO)}) == 90.0
