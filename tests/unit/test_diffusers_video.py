"""The diffusers backend's video (issue 36, point 4) on the CPU: a tiny AnimateDiff pipeline (SD 1.x layout + a
motion adapter, random weights, built from configs) saved in the model store's layout and loaded through the
backend's real code. txt2video and img2video end with an MP4 whose decoded frame count, fps and size equal the
request, plus a poster; the frames are decoded from the latents in chunks; an image model refuses video."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import av
import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from bench.diffusers_video_models import tiny_animatediff
from runtime.backends import diffusers_video
from runtime.backends.base import BackendError, JobContext, JobInputError, JobInterrupted
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.jobs.schema import JobSpec

CPU = DiffusersOptions(compile="off", buckets=((64, 64),))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("video-models")
    return {"motion": tiny_animatediff(root / "motion@v1"), "image": tiny_sd(root / "image@v1")}


@pytest.fixture(scope="module")
def backend(models) -> DiffusersBackend:
    backend = DiffusersBackend(device="cpu", options=CPU)
    backend.load_model("motion", models["motion"])
    return backend


def _job(task: str, images: dict[str, bytes] | None = None, model: str = "motion", **inputs: Any) -> JobContext:
    body = {"prompt": "a wave", "steps": 2, "guidance": 1.0, "width": 64, "height": 64, "seed": 3, **inputs}
    if task == "img2video":
        body["image"] = "https://example.com/start.png"
    return JobContext(job_id=f"j-{task}", job=JobSpec.parse({"model": model, "task": task, "inputs": body}),
                      input_images=images or {})


def _decoded(data: bytes) -> tuple[int, float, tuple[int, int]]:
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = [f for f in container.decode(stream)]
        return len(frames), float(stream.average_rate), (frames[0].width, frames[0].height)


def test_txt2video_is_an_mp4_of_the_requested_frames_fps_and_size(backend):
    result = backend.run(_job("txt2video", frames=10, fps=5))
    video, poster = result.outputs
    assert type(backend.resident.pipe).__name__ == "AnimateDiffPipeline"
    assert video.content_type == "video/mp4" and _decoded(video.data) == (10, 5.0, (64, 64))
    assert video.video["frames"] == 10 and video.video["duration_s"] == 2.0
    assert Image.open(io.BytesIO(poster.data)).size == (64, 64)
    again = backend.run(_job("txt2video", frames=10, fps=5))
    assert again.outputs[0].data == video.data  # a seed gives the same video


def test_img2video_starts_from_the_image(backend):
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (0, 0, 255)).save(buf, format="PNG")
    result = backend.run(_job("img2video", images={"image": buf.getvalue()}, frames=4, fps=4, output_format="webm"))
    assert result.outputs[0].content_type == "video/webm" and _decoded(result.outputs[0].data) == (4, 4.0, (64, 64))


def test_frames_are_decoded_in_chunks(backend, monkeypatch):
    calls: list[int] = []
    backend.run(_job("txt2video", frames=1))  # loads the model
    vae = backend.resident.pipe.vae
    original = vae.decode

    def counting(latents, *args, **kwargs):
        calls.append(latents.shape[0])
        return original(latents, *args, **kwargs)

    monkeypatch.setattr(vae, "decode", counting)
    monkeypatch.setattr(diffusers_video, "DECODE_CHUNK_FRAMES", 4)
    backend.run(_job("txt2video", frames=10, fps=5))
    assert calls == [4, 4, 2]  # never all ten at once


def test_a_cancel_stops_the_video_between_steps(backend):
    ctx = _job("txt2video", frames=4)
    ctx.cancel.set()
    with pytest.raises(JobInterrupted):
        backend.run(ctx)


def test_a_video_past_its_time_limit_ends_at_the_next_step(backend):
    """Issue 34's limit on issue 36's video path: it counts from the call's start and ends the call at a step."""
    ctx = _job("txt2video", frames=4)
    ctx.time_limit_s = 0.0  # already past once the call starts
    with pytest.raises(BackendError, match="ran past the job time limit"):
        backend.run(ctx)
    assert ctx.executing_since is not None


def test_an_image_model_refuses_video_naming_what_it_needs(models):
    backend = DiffusersBackend(device="cpu", options=CPU)
    backend.load_model("image", models["image"])
    with pytest.raises(JobInputError, match=r"is not a video model: txt2video .* AnimateDiff"):
        backend.run(_job("txt2video", model="image", frames=4))


def test_a_video_runs_alone(backend):
    assert backend.batch_key(_job("txt2video")) is None
