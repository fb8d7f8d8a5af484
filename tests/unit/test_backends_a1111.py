"""A1111 adapter against the fake WebUI (documented --api routes)."""

from __future__ import annotations

import base64
import threading
import time
from pathlib import Path

import httpx
import pytest

from runtime.backends.a1111 import A1111Backend
from runtime.backends.base import BackendError, BackendUnavailable, JobContext, JobInterrupted
from tests.fakes.fake_a1111 import FakeA1111
from tests.job_context import job_context, png


@pytest.fixture
def webui(tmp_path: Path):
    fake = FakeA1111(tmp_path / "sd-models", delay=0.1).start()
    yield fake
    fake.stop()


def model(tmp_path: Path, name: str) -> Path:
    path = tmp_path / "cache" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"w")
    return path


def job(task: str = "txt2img", images: dict[str, bytes] | None = None, **inputs) -> JobContext:
    return job_context("j_a1", "m", task, images, **{"prompt": "cat", "seed": 3, "guidance": 5.0, **inputs})


def test_txt2img_switches_model_once_and_decodes_images(webui, tmp_path):
    backend = A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir), progress_seconds=0.02)
    backend.wait_ready(5)
    backend.load_model("m", model(tmp_path, "m.safetensors"))
    backend.load_model("m", model(tmp_path, "m.safetensors"))
    assert webui.switches == ["m.safetensors [abc123]"]
    result = backend.run(job(num_outputs=2))
    assert len(result.outputs) == 2 and result.outputs[0].data.startswith(b"\x89PNG")
    sent = webui.generations[0]
    assert sent["kind"] == "txt2img" and sent["cfg_scale"] == 5.0 and sent["batch_size"] == 2
    assert result.metadata["model"] == "m.safetensors [abc123]"
    backend.load_model("n", model(tmp_path, "n.safetensors"))
    assert webui.switches[-1] == "n.safetensors [abc123]"


def test_img2img_sends_init_image(webui, tmp_path):
    backend = A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir))
    image = png(48, 40)
    backend.run(job("img2img", {"image": image}, strength=0.5))
    sent = webui.generations[0]
    assert sent["kind"] == "img2img" and base64.b64decode(sent["init_images"][0]) == image
    assert sent["denoising_strength"] == 0.5
    assert (sent["width"], sent["height"]) == (48, 40)  # null size: the input image's (the WebUI's would be 512)


def test_server_error_is_retryable(webui):
    webui.fail_generations = 1
    backend = A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir))
    with pytest.raises(BackendUnavailable):
        backend.run(job())
    assert backend.run(job()).outputs


def test_cancel_interrupts_and_progress_is_read(webui):
    webui.delay = 5
    backend = A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir), progress_seconds=0.05)
    ctx = job()
    threading.Timer(0.4, ctx.cancel.set).start()
    with pytest.raises(JobInterrupted):
        backend.run(ctx)
    assert ("POST", "/sdapi/v1/interrupt") in webui.requests
    assert ("GET", "/sdapi/v1/progress") in webui.requests


def backend_for(webui, **kw) -> A1111Backend:
    return A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir), progress_seconds=0.05, **kw)


def wait_for(probe, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.02)
    raise AssertionError("timed out")


def test_each_attempt_is_its_own_task(webui):
    first, second = job(), job()
    backend_for(webui).run(first)
    backend_for(webui).run(second)
    assert [g["force_task_id"] for g in webui.generations] == [first.backend_id, second.backend_id]
    assert first.backend_id != second.backend_id
    answer = httpx.post(f"{webui.url}/internal/progress", json={"id_task": first.backend_id}).json()
    assert answer["completed"] and not answer["active"]


def test_interrupt_by_someone_else_is_not_a_result(webui):
    """A1111 answers 200 with unfinished images after any interrupt; the adapter must not deliver them."""
    webui.delay = 3
    ctx = job()

    def interrupt_once_generating() -> None:  # not on a timer: on a loaded machine 0.4 s came before the submit
        wait_for(lambda: webui.current_task == ctx.backend_id)
        httpx.post(f"{webui.url}/sdapi/v1/interrupt")

    someone_else = threading.Thread(target=interrupt_once_generating)
    someone_else.start()
    with pytest.raises(JobInterrupted, match="not by this attempt"):
        backend_for(webui).run(ctx)
    someone_else.join()
    assert not ctx.cancel.is_set()  # the agent counts it as a failed attempt


def test_interrupt_waits_until_this_attempt_generates(webui):
    """Two agents on one WebUI: A's cancel must not stop B's generation that runs now."""
    webui.delay = 1.0
    results: dict[str, object] = {}
    b_job = job(prompt="b")
    thread = threading.Thread(target=lambda: results.update(b=backend_for(webui).run(b_job)))
    thread.start()
    wait_for(lambda: webui.current_task == b_job.backend_id)
    backend_for(webui).interrupt(job(prompt="a"))  # A's job is not generating
    thread.join(20)
    assert results["b"].outputs and webui.interrupts == 0


def test_earlier_attempt_still_generating_is_interrupted(webui):
    """A restarted agent: its previous process's request still generates; the new attempt stops it."""
    webui.delay = 30
    old = job()
    threading.Thread(target=lambda: httpx.post(f"{webui.url}/sdapi/v1/txt2img", timeout=60,
                                               json={"prompt": "old", "force_task_id": old.backend_id}),
                     daemon=True).start()
    wait_for(lambda: webui.current_task == old.backend_id)
    webui.delay = 0.2
    started = time.monotonic()
    assert backend_for(webui).run(job()).outputs
    assert time.monotonic() - started < 10 and webui.interrupts == 1


def test_cancel_before_submission_and_time_limit(webui):
    ctx = job()
    ctx.cancel.set()
    with pytest.raises(JobInterrupted):
        backend_for(webui).run(ctx)
    assert webui.generations == []
    webui.delay = 30
    late = job()
    late.deadline = time.monotonic() + 0.3
    with pytest.raises(BackendError, match="time limit"):
        backend_for(webui).run(late)
    assert webui.interrupts == 1


def test_the_request_is_built_from_the_typed_inputs_with_the_apis_defaults(webui):
    backend = A1111Backend(base_url=webui.url, model_dir=str(webui.models_dir))
    backend.run(job_context("j_defaults", "m", prompt="cat", seed=3))  # nothing else given
    sent = webui.generations[0]
    # The API's documented defaults reach the WebUI, not the WebUI's own (20 steps, 512 x 512, cfg 7).
    assert (sent["steps"], sent["width"], sent["height"], sent["cfg_scale"]) == (30, 1024, 1024, 7.0)
    assert sent["batch_size"] == 1 and sent["negative_prompt"] == "" and "sampler_name" not in sent
    drawn = job_context("j_drawn", "m", prompt="cat", scheduler="DPM++ 2M")  # null seed: drawn for the attempt
    backend.run(drawn)
    assert webui.generations[1]["seed"] == drawn.job.inputs.seed is not None
    assert webui.generations[1]["sampler_name"] == "DPM++ 2M"


def test_time_limit_counts_from_when_the_webui_starts_the_generation(webui):
    """Issue 34: a request waiting for the WebUI's queue lock is not charged for the wait."""
    backend = backend_for(webui)
    webui.delay = 1.5
    other = job_context("j_ahead", "m", prompt="another client's job", seed=1)  # not an attempt of the same job
    ahead = threading.Thread(target=lambda: backend_for(webui).run(other), daemon=True)
    ahead.start()
    wait_for(lambda: webui.current_task is not None)
    webui.delay = 0.2
    waiting = job()
    waiting.time_limit_s = 1.0  # it waits ~1.5 s for the lock, then generates in 0.2 s
    assert backend.run(waiting).outputs
    assert waiting.executing_since is not None and waiting.deadline == waiting.executing_since + 1.0
    ahead.join(timeout=30)


def test_a_generation_deaf_to_interrupt_and_skip_asks_for_a_restart(webui):
    """Issue 34: interrupt at the time limit; still current after the grace period: POST /sdapi/v1/skip; still
    current after twice the grace period: the adapter asks for the WebUI to be restarted."""
    webui.hang_generations, webui.hang_seconds = 1, 2.0
    backend = backend_for(webui, interrupt_grace_seconds=0.3)
    ctx = job()
    ctx.time_limit_s = 0.2
    with pytest.raises(BackendError, match="time limit"):
        backend.run(ctx)
    assert webui.interrupts >= 1 and webui.skips == 1
    reason = backend.restart_needed()
    assert reason and ctx.backend_id in reason and backend.restart_needed() is None
