"""Attempts of one job cannot see each other on ComfyUI (issue 15): retries, restarts, two agents, cancel."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from runtime.backends.base import BackendError, JobInterrupted
from tests.fakes.fake_comfyui import FakeComfyUI
from tests.unit import test_backends_comfyui as basics
from tests.unit.test_backends_comfyui import MODEL_FREE, backend_for, ctx

comfy, model_file = basics.comfy, basics.model_file  # the same fixtures


def wait_for(probe, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def running_prompt(fake: FakeComfyUI) -> str | None:
    running = httpx.get(f"{fake.url}/queue").json()["queue_running"]
    return running[0][1] if running else None


def test_retry_after_an_interrupted_attempt_reads_its_own_result(comfy, model_file):
    """The issue's loss: the old entry said "interrupted" and the retry acted on it."""
    comfy.delay = 5
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    first = ctx()
    timer = threading.Timer(0.3, backend.interrupt, args=(first,))
    timer.start()
    with pytest.raises(JobInterrupted):
        backend.run(first)
    timer.join()
    comfy.delay = 0.2
    second = ctx()  # the retry: same job, a new attempt
    result = backend.run(second)
    assert result.metadata["prompt_id"] == second.backend_id != first.backend_id
    assert [p["prompt_id"] for p in comfy.prompts] == [first.backend_id, second.backend_id]


def test_retry_after_a_node_error_is_not_answered_with_the_old_error(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    comfy.fail_executions = 1
    with pytest.raises(BackendError, match="illegal memory access"):
        backend.run(ctx())
    assert backend.run(ctx()).outputs


def test_restarted_agent_stops_the_earlier_attempt_still_running_and_queued(comfy, model_file):
    """systemd restarted the agent: its old prompt still runs and another still waits in ComfyUI's queue."""
    comfy.slow_runs = 1  # the first prompt to run (the old attempt) spends 30 s in its sampler; later ones do not
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job_id = "j_restarted"
    old = [ctx(job_id), ctx(job_id)]
    for attempt in old:
        workflow = backend._workflow(attempt, attempt.backend_id, [])
        httpx.post(f"{comfy.url}/prompt", json={"prompt": workflow, "prompt_id": attempt.backend_id}).raise_for_status()
    wait_for(lambda: running_prompt(comfy) == old[0].backend_id, what="the old attempt running")
    started = time.monotonic()
    fresh = backend_for(comfy)  # the new agent process: a new client id
    fresh.load_model("sd15", model_file)
    result = fresh.run(ctx(job_id))
    assert time.monotonic() - started < 10  # did not wait for the 30 s sampler of the old attempt
    assert result.outputs
    assert comfy.history[old[0].backend_id]["status"]["messages"][-1][0] == "execution_interrupted"
    assert old[1].backend_id not in comfy.history  # deleted from the queue, never run


def test_two_agents_on_one_comfyui_interrupt_only_their_own_prompt(comfy, model_file):
    """Drain: agent A hands its job back and interrupts; agent B's prompt (running) must carry on."""
    comfy.node_seconds = {"KSampler": 1.5}
    a, b = backend_for(comfy), backend_for(comfy)
    for backend in (a, b):
        backend.load_model("sd15", model_file)
    job_b = ctx("j_b", seed=1)
    results: dict[str, object] = {}
    thread = threading.Thread(target=lambda: results.update(b=b.run(job_b)))
    thread.start()
    wait_for(lambda: running_prompt(comfy) == job_b.backend_id, what="B's prompt running")
    job_a = ctx("j_a", seed=2)
    a.interrupt(job_a)  # A was draining a job that is only queued/not here: must not touch B's run
    thread.join(30)
    assert not thread.is_alive() and results["b"].outputs


def test_an_interrupt_nobody_asked_for_is_reported_without_the_cancel_flag(comfy, model_file):
    """Someone else's global /interrupt ends our prompt: JobInterrupted with ctx.cancel unset, so the
    agent counts it as a failed attempt (not a hand-back)."""
    comfy.delay = 5
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    timer = threading.Timer(0.4, lambda: httpx.post(f"{comfy.url}/interrupt", json={}))
    timer.start()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    timer.join()
    assert not job.cancel.is_set()


def test_cancel_right_before_submission_submits_nothing(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    job.input_images = {"init": b"\x89PNG"}

    def canceled() -> None:
        raise JobInterrupted("canceled while the inputs were uploaded")

    job.before_submit = canceled
    with pytest.raises(JobInterrupted, match="canceled"):
        backend.run(job)
    assert comfy.prompts == []
    assert list(comfy.input_dir.iterdir()) == []  # the upload is cleaned up too
    flagged = ctx()
    flagged.cancel.set()
    with pytest.raises(JobInterrupted):
        backend.run(flagged)
    assert comfy.prompts == []


def test_fake_survives_a_websocket_client_that_went_away(comfy, model_file):
    """Like ComfyUI (aiohttp swallows send errors), a vanished client never stops the worker thread."""
    from runtime.backends._websocket import WebSocketClient

    ws = WebSocketClient(comfy.url.replace("http", "ws") + "/ws?clientId=gone").connect()
    ws._conn.socket.close()  # vanish without a close frame (the library never gets to send one)
    httpx.post(f"{comfy.url}/prompt", json={"prompt": MODEL_FREE, "client_id": "gone"}).raise_for_status()
    backend = backend_for(comfy)
    assert backend.run(ctx(workflow=MODEL_FREE)).outputs


def test_prompt_of_an_attempt_that_ended_early_does_not_run_on(comfy, model_file):
    """A cancel that lands just after the POST: the attempt ends, and its prompt is interrupted too."""
    comfy.node_seconds = {"KSampler": 30}
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    job.before_submit = lambda: threading.Timer(0.2, job.cancel.set).start()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    assert wait_for(lambda: comfy.outcomes.get(job.backend_id), 20, "the prompt to stop") == "execution_interrupted"
