"""Hang drill (issue 34): a ComfyUI node that ignores interrupts (a stuck CUDA call) must not wedge the worker.

Local mode (API, SQS on moto, a real agent process) with the fake ComfyUI, whose sampler hangs on the first
prompt, deaf to POST /interrupt, as a real ComfyUI did with such a node. The agent's restart command is the
instance's own (instance_contract.BACKEND_RESTART_COMMAND: create a request file, wait until it is gone) pointed
at a temporary file; a thread here plays the AMI's root path unit: it restarts the fake (a crash, then the same
port again) and removes the request.

Before the fix: the hung attempt ended at the time limit, the prompt stayed in ``queue_running``, the next job
waited behind it in ComfyUI's queue and failed ``attempts-exhausted`` although it never ran. Now: the hung
attempt is ended (interrupt, then a restart after the grace period), the next job succeeds in one attempt, the
hung job's retry succeeds, and the time from the hang to serving again is printed (goal: under 60 s beyond the
job time limit).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime import instance_contract as ic
from tests.e2e._helpers import wait_until
from tests.e2e.test_backend_drills import finish, prompts_of, running_prompt, start
from tests.fakes.fake_comfyui import FakeComfyUI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TIME_LIMIT_S = 10  # the agent config's smallest max_job_seconds


class PathUnit:
    """The AMI's genai-backend-restart.path + .service, for the fake: request seen -> restart -> request removed."""

    def __init__(self, comfy: FakeComfyUI, request: Path) -> None:
        self.comfy, self.request = comfy, request
        self.restarted_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="restart-path-unit", daemon=True)

    def __enter__(self) -> PathUnit:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            if self.request.exists():
                self.comfy.crash()
                self.comfy.start()  # the same port: systemd starts the unit again
                self.restarted_at.append(time.monotonic())
                self.request.unlink()


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.5, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


def test_a_backend_node_that_ignores_interrupts_is_restarted_and_the_worker_serves_again(
        start_platform, tmp_path, comfy) -> None:
    request = tmp_path / "backend-restart.request"
    command = [part.replace(ic.BACKEND_RESTART_REQUEST, str(request)) for part in ic.BACKEND_RESTART_COMMAND]
    platform = start(start_platform, tmp_path, comfy, worker_overrides={
        "max_job_seconds": TIME_LIMIT_S, "backend_restart_command": command, "backend_restart_timeout_seconds": 60})
    comfy.hang_runs = 1  # the first prompt's sampler never returns on its own
    with PathUnit(comfy, request) as unit:
        hung_id = platform.ledger.submit(width=64, height=64, prompt="hangs")["id"]
        wait_until(lambda: running_prompt(comfy) in prompts_of(comfy, hung_id), 60, "the hung prompt running")
        hang_began = time.monotonic()
        next_id = platform.ledger.submit(width=64, height=64, prompt="the next job")["id"]
        records = finish(platform, "drill ComfyUI node ignores interrupts (restart, serve again)", [hung_id, next_id],
                         timeout=180)
        serving_again = time.monotonic()
    hung, following = records[hung_id], records[next_id]
    assert unit.restarted_at, "the backend was never restarted"
    assert following["status"] == "succeeded" and following["attempts"] == 1, following  # never counted as failed
    assert not following.get("attempt_errors"), following
    assert hung["status"] == "succeeded" and hung["attempts"] == 2, hung
    assert "time limit" in hung["attempt_errors"][0]["message"], hung["attempt_errors"]
    first = prompts_of(comfy, hung_id)[0]
    assert first not in comfy.outcomes  # it never ended on its own: the restart ended it
    restart_s = unit.restarted_at[0] - hang_began
    print(f"\nhang drill: hang -> backend restarted {restart_s:.1f} s ({restart_s - TIME_LIMIT_S:.1f} s beyond the "
          f"{TIME_LIMIT_S} s time limit); hang -> both jobs final {serving_again - hang_began:.1f} s; restarts: "
          f"{len(unit.restarted_at)}")
