"""Local mode with the fake ComfyUI (issue 37): a txt2video job on a ComfyUI video model (a folder of
diffusion_models/, text_encoders/, vae/ uploaded to the model store) goes API -> queue -> agent -> ComfyUI's default
Wan graph -> the CDN stand-in, and the file there decodes to the request's frame count, fps and size."""

from __future__ import annotations

import io
import uuid
from fractions import Fraction
from pathlib import Path

import av
import httpx
import pytest

from tests.e2e._helpers import store, wait_until
from tests.fakes.fake_comfyui import FakeComfyUI


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.2, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


def video_model(folder: Path) -> Path:
    for kind, name in (("diffusion_models", "wan2.2_ti2v_5B_fp16.safetensors"),
                       ("text_encoders", "umt5_xxl_fp8_e4m3fn_scaled.safetensors"), ("vae", "wan2.2_vae.safetensors")):
        (folder / kind).mkdir(parents=True)
        (folder / kind / name).write_bytes(b"weights " + kind.encode())
    return folder


def test_a_txt2video_job_ends_with_a_playable_file_of_the_requested_frames_and_fps(start_platform, tmp_path, comfy):
    platform = start_platform(backend="comfyui", backend_url=comfy.url, workers=1,
                              models={"wan22-ti2v": str(video_model(tmp_path / "wan22"))},
                              backend_model_dirs=[str(comfy.models_dir)])
    body = {"model": "wan22-ti2v", "task": "txt2video",
            "inputs": {"prompt": "a boat", "width": 96, "height": 64, "frames": 7, "fps": 10, "steps": 2, "seed": 1}}
    answer = platform.ledger.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code in (200, 202), answer.text
    job_id = answer.json()["id"]
    view = platform.ledger.wait_final([job_id], timeout=90)[job_id]
    assert view["status"] == "succeeded", view
    (video,) = view["outputs"]
    response = httpx.get(video["url"], timeout=10)  # from the CDN stand-in
    assert response.status_code == 200 and response.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(response.content)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        fps = Fraction(stream.average_rate or stream.guessed_rate).limit_denominator(1000)
        size = (stream.codec_context.width, stream.codec_context.height)
    assert (frames, fps, size) == (7, 10, (96, 64))
    rec = store(platform).get(job_id)
    assert rec["outputs"][0]["video"]["frames"] == 7 and rec["outputs"][0]["video"]["fps"] == 10, rec["outputs"]
    sent = next(p["prompt"] for p in comfy.prompts if p["prompt_id"].startswith(f"{job_id}."))
    assert {n["class_type"] for n in sent.values()} >= {"UNETLoader", "CLIPLoader", "VAELoader", "SaveVideo"}
    wait_until(lambda: not [p for p in comfy.output_dir.rglob("*") if p.is_file()], 10, "ComfyUI's files deleted")
