"""Drill (issue 36, point 3): a txt2video job whose task limit is above ``maxJobSeconds`` runs past
``maxJobSeconds`` on a real agent process, its lease renewed all through, and succeeds on its first attempt;
an image job on the same agent is still held to ``maxJobSeconds``. Slow test-pattern video against moto."""

from __future__ import annotations

import time

import pytest

from fleetdev.worker_support import Stack, eventually
from tests.integration.test_worker_drills import Worker

pytestmark = [pytest.mark.integration, pytest.mark.slow]
MAX_JOB_SECONDS = 10  # the agent's lowest allowed limit
DELAY = 14  # the test pattern's stand-in for inference: past MAX_JOB_SECONDS, within the video task's limit


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint, max_receive_count=3, visibility=3)


@pytest.fixture
def worker(stack, tmp_path):
    w = Worker(stack, tmp_path, "video", delay=DELAY, max_job_seconds=MAX_JOB_SECONDS,
               task_max_job_seconds={"txt2video": 120})
    yield w
    w.stop()


def test_a_video_runs_past_max_job_seconds_with_its_lease_renewed(stack, worker):
    job_id = stack.submit(task="txt2video", prompt="a wave", width=64, height=64, frames=8, fps=8, seed=1)
    running = stack.wait_status(job_id, ("running",), timeout=30)
    began = time.monotonic()
    leases = []
    while time.monotonic() - began < MAX_JOB_SECONDS + 2:  # sample the record past maxJobSeconds
        record = stack.store.get(job_id)
        assert record["status"] == "running", worker.log.read_text()[-2000:]
        leases.append(float(record["lease_expires_at"]))
        time.sleep(1)
    assert leases[-1] > leases[0] + MAX_JOB_SECONDS - 2  # renewed all through (the lease is 3 s)
    final = stack.wait_status(job_id, ("succeeded", "failed"), timeout=30)
    assert final["status"] == "succeeded", (final.get("error"), worker.log.read_text()[-2000:])
    assert final["attempts"] == 1 and final["lease"] == running["lease"]  # never swept nor retried
    video, poster = final["outputs"]
    assert video["content_type"] == "video/mp4" and video["video"]["frames"] == 8 and video["video"]["fps"] == 8
    assert poster["content_type"] == "image/png"


def test_an_image_job_on_the_same_agent_is_held_to_max_job_seconds(stack, worker):
    job_id = stack.submit()
    stack.wait_status(job_id, ("running",), timeout=30)

    def errors() -> str:
        record = stack.store.get(job_id)
        return " ".join(str(e.get("message", "")) for e in record.get("attempt_errors") or [])

    eventually(lambda: "ran past the job time limit" in errors(), timeout=MAX_JOB_SECONDS + 20,
               what="the image attempt ended at maxJobSeconds")
