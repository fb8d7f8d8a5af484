"""Drills with real agent processes (``python -m runtime.worker run``) against moto and the fake IMDS.

- SIGKILL mid-job loses nothing: the lease runs out, another worker redoes the job, recorded once.
- A spot notice drains: the running job finishes when it fits the time left, else it is handed back at
  once; the agent stops pulling and completes the terminating lifecycle action (recording fake).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdev.local.fake_imds import FakeIMDS
from fleetdev.worker_support import Stack, eventually
from runtime.worker.aws import RecordingAutoScaling

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, stack: Stack, tmp: Path, name: str, delay: float, visibility: int = 3,
                 **extra: object) -> None:
        self.name = name
        self.imds = FakeIMDS(instance_id=f"i-{name}").start()
        self.calls = tmp / f"{name}-autoscaling.jsonl"
        self.log = tmp / f"{name}.log"
        config = {
            "stack": "drill", "region": "us-east-1", "job_table": stack.table, "backend": "test-pattern",
            "queue": {"kind": "sqs", "url": stack.queue_url, "max_receive_count": stack.max_receive_count,
                      "visibility_timeout_seconds": visibility, "wait_time_seconds": 1},
            "outputs": {"bucket": stack.bucket, "cdn_base_url": "https://cdn.example.test"},
            "endpoints": {**{s: stack.endpoint for s in ("s3", "sqs", "dynamodb")}, "imds": self.imds.url,
                          "autoscaling": f"record:{self.calls}"},
            "lifecycle": {"launching_hook": "launch-hook", "terminating_hook": "drain-hook",
                          "auto_scaling_group": "workers", "poll_seconds": 0.2, "drain_margin_seconds": 5},
            "metrics_sink": "stdout", "retry_delay_seconds": 0, "cancel_poll_seconds": 0.5,
            "test_pattern_delay_seconds": delay, "backend_ready_timeout_seconds": 10, **extra,
        }
        path = tmp / f"{name}.json"
        path.write_text(json.dumps(config))
        self.out = self.log.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "runtime.worker", "run", "--config", str(path)],
                                     cwd=ROOT, stdout=self.out, stderr=subprocess.STDOUT, env=dict(os.environ))

    def calls_made(self) -> list[dict]:
        return RecordingAutoScaling.read(self.calls)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.close()
        self.imds.stop()


@pytest.fixture
def workers():
    started: list[Worker] = []
    yield started
    for w in started:
        w.stop()


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint, max_receive_count=3, visibility=3)


def _start(workers: list[Worker], *args, **kwargs) -> Worker:
    worker = Worker(*args, **kwargs)
    workers.append(worker)
    return worker


def test_sigkill_mid_job_loses_nothing(stack, workers, tmp_path):
    a = _start(workers, stack, tmp_path, "a", delay=6.0)
    job_id = stack.submit()
    record = stack.wait_status(job_id, ("running",), timeout=30)
    assert record["worker_id"] == "i-a"
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(5)
    b = _start(workers, stack, tmp_path, "b", delay=0.2)
    record = stack.wait_status(job_id, ("succeeded", "failed"), timeout=40)
    assert record["status"] == "succeeded", b.log.read_text()[-2000:]
    assert record["worker_id"] == "i-b" and record["attempts"] == 2
    assert record["outputs"][0]["key"] == f"outputs/{job_id}/2/image-0.png"  # the second lease's objects
    eventually(lambda: stack.counts() == (0, 0), timeout=10, what="message deleted")
    launched = [c for c in b.calls_made() if c["op"] == "complete_lifecycle_action"]
    assert launched[0]["hook"] == "launch-hook" and launched[0]["instance_id"] == "i-b"


def test_spot_notice_finishes_a_job_that_fits_then_completes_the_terminating_action(stack, workers, tmp_path):
    a = _start(workers, stack, tmp_path, "a", delay=2.0)
    job_id = stack.submit()
    stack.wait_status(job_id, ("running",), timeout=30)
    a.imds.set_spot_interruption(in_seconds=120)
    late = stack.submit()
    assert a.proc.wait(30) == 0
    assert stack.store.get(job_id)["status"] == "succeeded"
    assert stack.store.get(late)["status"] == "queued"  # stopped pulling
    ops = [(c["op"], c.get("hook")) for c in a.calls_made()]
    assert ops[-1] == ("complete_lifecycle_action", "drain-hook")
    assert ("set_instance_protection", None) in ops
    assert '"SpotInterruptions"' in a.log.read_text()


def test_spot_notice_hands_back_a_job_that_does_not_fit(stack, workers, tmp_path):
    a = _start(workers, stack, tmp_path, "a", delay=60.0)
    job_id = stack.submit()
    stack.wait_status(job_id, ("running",), timeout=30)
    a.imds.set_spot_interruption(in_seconds=10)
    assert a.proc.wait(20) == 0
    assert ("complete_lifecycle_action", "drain-hook") in [(c["op"], c.get("hook")) for c in a.calls_made()]
    assert '"JobsHandedBack"' in a.log.read_text()
    _start(workers, stack, tmp_path, "b", delay=0.2)
    record = stack.wait_status(job_id, ("succeeded",), timeout=20)  # visible at once, not after the lease
    assert record["worker_id"] == "i-b"


def test_terminating_lifecycle_state_drains(stack, workers, tmp_path):
    a = _start(workers, stack, tmp_path, "a", delay=0.2)
    job_id = stack.submit()
    stack.wait_status(job_id, ("succeeded",), timeout=30)
    a.imds.set_target_lifecycle_state("Terminated")
    assert a.proc.wait(20) == 0
    assert [c["hook"] for c in a.calls_made() if c["op"] == "complete_lifecycle_action"] == ["launch-hook",
                                                                                             "drain-hook"]
