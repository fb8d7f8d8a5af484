"""Local mode, video end to end (issue 36, Done when): txt2video and img2video jobs on the test-pattern backend and
on the diffusers backend (a tiny AnimateDiff built from configs, uploaded to the model store as kind ``video`` by
local mode, fetched by the agent's model cache, CPU) end with an MP4 whose decoded frame count, fps and size equal
the request, plus a poster image, both from the CDN stand-in; on the diffusers fleet a video job on an image model
is refused with 422 before anything is written."""

from __future__ import annotations

import base64
import io
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from bench.diffusers_video_models import tiny_animatediff
from tests.e2e._helpers import store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _start_image(width: int, height: int) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 90, 40)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _run(platform: Any, model: str, task: str, **inputs: Any) -> dict[str, Any]:
    if task == "img2video":
        inputs["image"] = _start_image(inputs["width"], inputs["height"])
    view = platform.ledger.submit(prompt="a wave", model=model, task=task, seed=4, **inputs)
    view = platform.ledger.wait_final([view["id"]], timeout=180)[view["id"]]
    assert view["status"] == "succeeded", view
    return view


def _check_video(view: dict[str, Any], frames: int, fps: int, size: tuple[int, int]) -> Image.Image:
    video, poster = view["outputs"]
    answer = httpx.get(video["url"], timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(answer.content)) as container:
        stream = container.streams.video[0]
        decoded = sum(1 for _ in container.decode(stream))
        rate = Fraction(stream.average_rate or stream.guessed_rate).limit_denominator(1000)
        assert (decoded, rate, (stream.codec_context.width, stream.codec_context.height)) == (frames, fps, size)
        assert stream.codec_context.name == "h264"
    picture = httpx.get(poster["url"], timeout=10)
    assert picture.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(picture.content)).convert("RGB")
    assert image.size == size
    return image


@pytest.mark.parametrize("task", ["txt2video", "img2video"])
def test_test_pattern_videos_in_local_mode(start_platform, task):
    platform = start_platform(backend="test-pattern", workers=1)
    view = _run(platform, "sdxl-base-1.0", task, width=96, height=64, frames=12, fps=6)
    poster = _check_video(view, 12, 6, (96, 64))
    if task == "img2video":  # the frames are drawn over the start image the agent fetched (top right: no bar)
        assert poster.getpixel((94, 2)) == (200, 90, 40)
    assert store(platform).get(view["id"])["outputs"][0]["video"]["duration_s"] == 2.0


def test_diffusers_videos_in_local_mode_and_an_image_model_refused(start_platform, tmp_path: Path):
    models = {"tiny-video": str(tiny_animatediff(tmp_path / "tiny-video")), "tiny-sd": str(tiny_sd(tmp_path / "sd"))}
    platform = start_platform(backend="diffusers", workers=1, models=models)
    assert {m.model_id: m.kind for m in platform.models.values()} == {"tiny-video": "video", "tiny-sd": "diffusers"}
    for task in ("txt2video", "img2video"):
        view = _run(platform, "tiny-video", task, width=64, height=64, frames=6, fps=3, steps=2, guidance=1.0)
        _check_video(view, 6, 3, (64, 64))
    body = {"model": "tiny-sd", "task": "txt2video", "inputs": {"prompt": "a wave", "width": 64, "height": 64}}
    refused = platform.ledger.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert refused.status_code == 422, refused.text
    [error] = refused.json()["errors"]
    assert error["field"] == "model" and "kind diffusers" in error["message"] and "tiny-video" in error["message"]
