"""ComfyUI adapter against the fake ComfyUI server (documented HTTP + websocket API)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime.backends.base import BackendError, BackendUnavailable, JobContext, JobInputError, JobInterrupted
from runtime.backends.comfyui import ComfyUIBackend, default_workflow
from tests.fakes.fake_comfyui import FakeComfyUI


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy-models", delay=0.1).start()
    yield fake
    fake.stop()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def backend_for(fake: FakeComfyUI, **kw) -> ComfyUIBackend:
    return ComfyUIBackend(base_url=fake.url, model_dir=str(fake.models_dir), poll_seconds=0.05, **kw)


def ctx(job_id: str = "j_test1", **inputs) -> JobContext:
    return JobContext(job_id=job_id, spec={"model": "sd15", "task": "txt2img",
                                           "inputs": {"prompt": "a cat", "seed": 7, **inputs}})


@pytest.mark.parametrize("use_websocket", [True, False], ids=["websocket", "history-polling"])
def test_job_runs_with_our_id_as_prompt_id_and_model_linked(comfy, model_file, use_websocket):
    backend = backend_for(comfy, use_websocket=use_websocket)
    backend.wait_ready(5)
    backend.load_model("sd15", model_file)
    assert (comfy.models_dir / "sd15.safetensors").resolve() == model_file.resolve()
    result = backend.run(ctx())
    assert comfy.prompts[0]["prompt_id"] == "j_test1"
    loader = next(n for n in comfy.prompts[0]["prompt"].values() if n["class_type"] == "CheckpointLoaderSimple")
    assert loader["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert [o.content_type for o in result.outputs] == ["image/png"]
    assert result.outputs[0].data.startswith(b"\x89PNG")
    assert ("GET", "/view") in comfy.requests
    backend.close()


def test_websocket_signals_completion_before_the_poll_interval(comfy, model_file):
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(comfy.models_dir), poll_seconds=2.0)
    backend.load_model("sd15", model_file)
    started = time.monotonic()
    backend.run(ctx())
    assert time.monotonic() - started < 1.5  # polling alone would wait for the 2 s interval


def test_validation_errors_name_the_node(comfy, model_file):
    backend = backend_for(comfy)
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}}}
    with pytest.raises(JobInputError, match=r"node 1 \(CheckpointLoaderSimple\).*not in list"):
        backend.run(ctx(workflow=workflow))


def test_user_workflow_gets_model_seed_and_uploaded_image(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    workflow = default_workflow({"prompt": "x"}, "other.safetensors", None)
    workflow["10"] = {"class_type": "LoadImage", "inputs": {"image": "init"}}
    job = ctx(workflow=workflow, seed=42)
    job.input_images = {"init": b"\x89PNG fake"}
    backend.run(job)
    sent = comfy.prompts[0]["prompt"]
    assert sent["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert sent["3"]["inputs"]["seed"] == 42
    assert sent["10"]["inputs"]["image"] == "j_test1-init.png"
    assert comfy.uploads["j_test1-init.png"] == b"\x89PNG fake"


def test_server_errors_and_execution_errors_are_retryable(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    comfy.fail_prompts = 1
    with pytest.raises(BackendUnavailable):
        backend.run(ctx("j_a"))
    comfy.fail_executions = 1
    with pytest.raises(BackendError, match="illegal memory access") as info:
        backend.run(ctx("j_b"))
    assert not isinstance(info.value, JobInputError)
    assert backend.run(ctx("j_c")).outputs


def test_crash_mid_job_is_backend_unavailable(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    comfy.die_on_execute = True
    with pytest.raises(BackendUnavailable):
        backend.run(ctx())


def test_interrupt_posts_interrupt_and_raises(comfy, model_file):
    comfy.delay = 5
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    threading.Timer(0.3, backend.interrupt, args=(job,)).start()
    started = time.monotonic()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    assert comfy.interrupts >= 1
    assert time.monotonic() - started < 3


def test_redelivered_job_reuses_finished_prompt(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    backend.run(ctx())
    backend.run(ctx())
    assert len(comfy.prompts) == 1


def test_readiness_wait_gives_up(tmp_path):
    backend = ComfyUIBackend(base_url="http://127.0.0.1:9", model_dir=str(tmp_path))
    with pytest.raises(BackendUnavailable, match="not ready"):
        backend.wait_ready(0.3)
    with pytest.raises(BackendUnavailable, match="process exited"):
        ComfyUIBackend(base_url="http://127.0.0.1:9", model_dir=str(tmp_path), is_alive=lambda: False).wait_ready(30)


def test_fake_comfyui_drops_a_websocket_client_whose_file_is_closed(tmp_path):
    """The drills rely on the fake's executor surviving a client that went away (as ComfyUI's does)."""
    import io

    fake = FakeComfyUI(tmp_path / "models")
    closed = io.BytesIO()
    closed.close()
    fake._sockets["gone"] = (closed, threading.Lock())
    fake._emit("gone", "executing", {"node": None, "prompt_id": "p"})  # must not raise
    assert "gone" not in fake._sockets
