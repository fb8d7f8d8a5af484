"""A1111 adapter against the fake WebUI (documented --api routes)."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import pytest

from runtime.backends.a1111 import A1111Backend
from runtime.backends.base import BackendUnavailable, JobContext, JobInterrupted
from tests.fakes.fake_a1111 import FakeA1111


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


def job(**inputs) -> JobContext:
    return JobContext("j_a1", {"model": "m", "inputs": {"prompt": "cat", "seed": 3, "guidance": 5.0, **inputs}})


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
    ctx = job(strength=0.5)
    ctx.input_images = {"image": b"\x89PNGdata"}
    backend.run(ctx)
    sent = webui.generations[0]
    assert sent["kind"] == "img2img" and base64.b64decode(sent["init_images"][0]) == b"\x89PNGdata"
    assert sent["denoising_strength"] == 0.5


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
