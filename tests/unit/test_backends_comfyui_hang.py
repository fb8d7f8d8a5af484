"""Issue 34: a ComfyUI node that ignores interrupts must not wedge the worker.

Against the fake ComfyUI's ``GenaiFleetHang`` node (sleeps, never polls the interrupt flag: what a real ComfyUI
did with such a custom node). The adapter confirms that a prompt told to stop left ``queue_running`` within
its grace period and otherwise asks for a restart (``restart_needed``); the time limit counts from when ComfyUI
started the prompt; a prompt that never started by its start limit is BackendBusy (handed back uncounted);
clean-up waits for the interrupted prompt's history entry before deleting it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime.backends.base import BackendBusy, BackendError, JobInterrupted
from runtime.worker.failures import Cause, classify
from tests.fakes.fake_comfyui import FakeComfyUI
from tests.unit.test_backends_comfyui import MODEL_FREE, backend_for, ctx


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.1, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def hanging(seconds: float = 60.0) -> dict:
    return {**MODEL_FREE, "2": {"class_type": "GenaiFleetHang", "inputs": {"images": ["1", 0], "seconds": seconds}}}


def running(comfy: FakeComfyUI) -> str | None:
    with comfy._cond:
        return comfy._running[1] if comfy._running else None


def wait(probe, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < end, "condition never held"
        time.sleep(0.02)


def test_time_limit_on_a_node_that_ignores_interrupts_asks_for_a_restart(comfy):
    backend = backend_for(comfy, interrupt_grace_seconds=0.5)
    job = ctx(workflow=hanging())
    job.time_limit_s = 0.5
    with pytest.raises(BackendError, match="time limit"):
        backend.run(job)
    assert running(comfy) == job.backend_id  # POST /interrupt did nothing: the node still sleeps
    reason = backend.restart_needed()
    assert reason and job.backend_id in reason and "ignores interrupts" in reason
    assert backend.restart_needed() is None  # taken once
    assert comfy.interrupts >= 1


def test_cancel_of_a_hung_prompt_asks_for_a_restart(comfy):
    backend = backend_for(comfy, interrupt_grace_seconds=0.5)
    job = ctx(workflow=hanging())
    def in_the_hung_node() -> bool:  # an interrupt before the node starts still works (checked between nodes)
        return running(comfy) == job.backend_id and comfy._last_node == "2"

    threading.Thread(target=lambda: (wait(in_the_hung_node), backend.interrupt(job)), daemon=True).start()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    assert "ignores interrupts" in (backend.restart_needed() or "")


def test_a_prompt_that_honours_the_interrupt_needs_no_restart_and_its_entry_is_deleted(comfy, model_file):
    """Clean-up waits until the interrupted prompt left the queue (its history entry is written then) before
    it reads and deletes the entry: read earlier, the entry was missed and stayed."""
    comfy.node_seconds = {"KSampler": 30}  # polls the flag at every step
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    job.time_limit_s = 0.3
    with pytest.raises(BackendError, match="time limit"):
        backend.run(job)
    assert backend.restart_needed() is None
    assert comfy.outcomes[job.backend_id] == "execution_interrupted"  # ended before run returned
    assert job.backend_id not in comfy.history


def test_the_time_limit_counts_from_when_comfyui_starts_the_prompt(comfy):
    """Queued behind another client's prompt for longer than its time limit, the job still runs and succeeds:
    the wait is not charged (the limit used to start at the claim)."""
    comfy.node_seconds = {"ImageInvert": 1.5}
    other = dict(MODEL_FREE)
    other["1"] = {**MODEL_FREE["1"], "inputs": {**MODEL_FREE["1"]["inputs"], "color": 5}}
    from tests.contract.comfy_client import ComfyClient

    client = ComfyClient(comfy.url)
    client.submit(other, "someone-else")
    wait(lambda: running(comfy) == "someone-else")
    backend = backend_for(comfy)
    job = ctx(workflow=MODEL_FREE)
    job.time_limit_s, job.start_deadline = 1.0, time.monotonic() + 60
    comfy.node_seconds = {"ImageInvert": 1.5}  # the other prompt holds the server 1.5 s; ours then runs 1.5 s too
    try:
        with pytest.raises(BackendError, match="time limit"):  # ours really runs past 1 s: the limit still applies
            backend.run(job)
        assert job.executing_since is not None and job.deadline == job.executing_since + 1.0
        assert comfy.outcomes.get("someone-else") == "execution_success"
        comfy.node_seconds = {}
        fast = ctx("j_fast", workflow=MODEL_FREE)
        client.submit(other | {"1": {**other["1"], "inputs": {**other["1"]["inputs"], "color": 6}}}, "someone-2")
        comfy.node_seconds = {"ImageInvert": 1.5}
        wait(lambda: running(comfy) == "someone-2")
        comfy.node_seconds = {}
        fast.time_limit_s, fast.start_deadline = 1.0, time.monotonic() + 60
        result = backend.run(fast)  # waited ~1.5 s in ComfyUI's queue, ran well within 1 s
        assert result.outputs
    finally:
        client.close()


def test_a_prompt_never_started_by_its_start_limit_goes_back_uncounted(comfy):
    from tests.contract.comfy_client import ComfyClient

    client = ComfyClient(comfy.url)
    client.submit(hanging(), "held-by-another-client")
    wait(lambda: running(comfy) == "held-by-another-client")
    backend = backend_for(comfy)
    job = ctx(workflow=MODEL_FREE)
    job.time_limit_s, job.start_deadline = 60.0, time.monotonic() + 0.5
    try:
        with pytest.raises(BackendBusy) as raised:
            backend.run(job)
        assert classify(raised.value).cause is Cause.INFRASTRUCTURE  # handed back, attempt not counted
        assert job.backend_id not in [i[1] for i in client.queue()["queue_pending"]]  # deleted, never runs
        assert backend.restart_needed() is None  # not ours to stop
    finally:
        client.close()


def test_the_sweep_deletes_leftover_history_entries_and_files_older_than_its_bound(comfy):
    """Issue 34: what an attempt could not clean up (an agent killed mid-job, a prompt that ran on after its
    attempt gave up) is deleted by the periodic sweep, so a leak cannot grow without limit."""
    import os

    from tests.contract.comfy_client import ComfyClient

    client = ComfyClient(comfy.url)
    try:
        client.submit(MODEL_FREE, "left-behind")
        client.wait_history("left-behind")
    finally:
        client.close()
    upload = comfy.input_dir / "j_x.attempt-image.png"
    upload.write_bytes(b"png")
    marker = comfy.output_dir / ".written-by-comfyui"
    marker.write_text("ok")
    (file,) = [p for p in comfy.output_dir.iterdir() if p.name.startswith("t_")]
    backend = backend_for(comfy)
    assert backend.sweep(3600) == 0 and file.exists() and "left-behind" in comfy.history  # young: kept
    hour_ago = time.time() - 7200
    for path in (file, upload):
        os.utime(path, (hour_ago, hour_ago))
    for _, data in comfy.history["left-behind"]["status"]["messages"]:
        data["timestamp"] = int(hour_ago * 1000)
    assert backend.sweep(3600) == 3
    assert not file.exists() and not upload.exists() and "left-behind" not in comfy.history
    assert marker.exists()  # dot files are not job files
