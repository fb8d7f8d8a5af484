"""Issue 38: what each backend reports through ``JobContext.report`` (the fakes and tiny models; the real ComfyUI
was checked by hand, README). The reporter's coalescing is tested in test_progress_events.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.diffusers_models import tiny_sd
from runtime.backends.test_pattern import TestPatternBackend
from runtime.jobs.progress import Progress
from tests.job_context import job_context, png


def _collect(ctx: Any) -> list[Progress]:
    seen: list[Progress] = []
    ctx.progress = seen.append
    return seen


def test_test_pattern_reports_every_step_of_its_stand_in():
    ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", steps=30, width=64, height=64, seed=1)
    seen = _collect(ctx)
    TestPatternBackend(delay_seconds=0.03).run(ctx)
    assert [(p.step, p.steps) for p in seen] == [(s, 30) for s in range(1, 31)]


def test_test_pattern_video_reports_its_frames_while_encoding():
    ctx = job_context("j1", "m", "txt2video", None, prompt="a cat", frames=8, fps=8, width=64, height=64, seed=1)
    seen = _collect(ctx)
    TestPatternBackend(delay_seconds=0).run(ctx)
    encoding = [p.frames_done for p in seen if p.stage == "encoding"]
    assert encoding == list(range(0, 9)) and seen[-1].fraction() == 1.0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_sd(tmp_path_factory.mktemp("models") / "a@v1", seed=0)


def test_diffusers_reports_each_denoising_step_from_callback_on_step_end(tiny):
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions

    backend = DiffusersBackend(device="cpu", options=DiffusersOptions(compile="off", buckets=((64, 64),)))
    backend.load_model("a", tiny)
    ctx = job_context("j1", "a", "txt2img", None, prompt="a cat", steps=30, width=64, height=64, seed=3)
    seen = _collect(ctx)
    backend.run(ctx)
    assert [(p.step, p.steps) for p in seen] == [(s, 30) for s in range(1, 31)]
    # img2img at strength 0.5 runs half the steps: the pipeline's own count is the one reported
    ctx = job_context("j2", "a", "img2img", {"image": png(64, 64)}, prompt="a cat", steps=10, width=64, height=64,
                      seed=3, strength=0.5)
    seen = _collect(ctx)
    backend.run(ctx)
    assert seen[-1].step == seen[-1].steps == 5 and seen[-1].fraction() == 1.0


def test_comfyui_reports_the_samplers_websocket_progress(tmp_path: Path):
    from runtime.backends.comfyui import ComfyUIBackend
    from tests.fakes.fake_comfyui import FakeComfyUI

    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.3, root=tmp_path / "comfy").start()
    try:
        model = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"weights")
        backend = ComfyUIBackend(base_url=fake.url, model_dir=str(fake.models_dir), poll_seconds=0.05)
        backend.wait_ready(5)
        backend.load_model("sd15", model)
        ctx = job_context("j1", "sd15", "txt2img", None, prompt="a cat", seed=7, steps=30)
        seen = _collect(ctx)
        backend.run(ctx)
        backend.close()
    finally:
        fake.stop()
    assert [(p.step, p.steps) for p in seen] == [(s, 30) for s in range(1, 31)]


def test_a1111_reports_what_its_progress_endpoint_says_while_the_generation_runs(tmp_path: Path):
    from runtime.backends.a1111 import A1111Backend
    from tests.fakes.fake_a1111 import FakeA1111

    fake = FakeA1111(tmp_path / "sd-models", delay=0.6).start()
    try:
        backend = A1111Backend(base_url=fake.url, model_dir=str(fake.models_dir), progress_seconds=0.02)
        ctx = job_context("j1", "m", "txt2img", None, prompt="a cat", seed=3, steps=30)
        seen = _collect(ctx)
        backend.run(ctx)
        backend.close()
    finally:
        fake.stop()
    steps = [p.step for p in seen]
    assert len(seen) >= 3 and steps == sorted(steps) and {p.steps for p in seen} == {30}
    assert all(p.percent is not None for p in seen)


def test_comfyui_without_its_websocket_reports_the_stage_only(tmp_path: Path):
    """Issue 38 (4): when the websocket cannot be opened the adapter polls /queue and /history, which say
    queued, running or done and nothing finer: one ``running`` stage report, no invented step counts."""
    from runtime.backends.comfyui import ComfyUIBackend
    from tests.fakes.fake_comfyui import FakeComfyUI

    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.3, root=tmp_path / "comfy").start()
    try:
        model = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
        model.parent.mkdir(parents=True)
        model.write_bytes(b"weights")
        backend = ComfyUIBackend(base_url=fake.url, model_dir=str(fake.models_dir), poll_seconds=0.05,
                                 use_websocket=False)
        backend.wait_ready(5)
        backend.load_model("sd15", model)
        ctx = job_context("j1", "sd15", "txt2img", None, prompt="a cat", seed=7, steps=30)
        seen = _collect(ctx)
        backend.run(ctx)
        backend.close()
    finally:
        fake.stop()
    assert [p.as_dict() for p in seen] == [{"stage": "running"}]
