"""Issue 38's "done when" in local mode: a 30-step job on the diffusers backend (tiny random-weight pipeline on the
CPU) and on the fake ComfyUI yields at least 5 progress events, monotone within its attempt (each event carries its
attempt number), ending at 100 % before the final status, read through GET /v1/jobs/{id}/events with the
client's cursor. (The same by hand against a real ComfyUI through COMFYUI_URL: README "Job progress".)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from genai_fleet_client import Client
from tests.fakes.fake_comfyui import FakeComfyUI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _events(platform: Any, job_id: str) -> list[dict[str, Any]]:
    with Client(platform.api_key, platform.api_url) as client:
        return list(client.follow(job_id, wait_s=10))


def _check(events: list[dict[str, Any]]) -> list[float]:
    assert events[0]["status"] == "queued" and events[-1]["status"] == "succeeded", events
    cursors = [e["cursor"] for e in events]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    running = [e for e in events if e["kind"] == "progress" and e["stage"] == "running"]
    assert {e["attempt"] for e in events[1:-1]} == {1}
    percents = [e["percent"] for e in running]
    assert len(percents) >= 5 and percents == sorted(percents) and percents[-1] == 100.0, running
    assert events.index(running[-1]) < len(events) - 1  # 100 % comes before the final status
    return percents


def test_a_30_step_diffusers_job_reports_its_steps(start_platform) -> None:
    platform = start_platform(backend="diffusers", workers=1, tiny_models={"tiny-sd": ("sd15", 0)})
    job = platform.ledger.submit(model="tiny-sd", width=64, height=64, seed=3, steps=30, prompt="a cat")
    percents = _check(_events(platform, job["id"]))
    print(f"\ndiffusers tiny, 30 steps: {len(percents)} progress events {percents}")


def test_a_30_step_job_on_the_fake_comfyui_reports_its_sampler_steps(start_platform, tmp_path: Path) -> None:
    comfy = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=1.5, root=tmp_path / "comfy").start()
    try:
        checkpoint = tmp_path / "sdxl-base-1.0.safetensors"
        checkpoint.write_bytes(b"not really weights" * 1000)
        platform = start_platform(backend="comfyui", backend_url=comfy.url, workers=1,
                                  models={"sdxl-base-1.0": str(checkpoint)}, backend_model_dirs=[str(comfy.models_dir)])
        job = platform.ledger.submit(width=64, height=64, seed=3, steps=30)
        percents = _check(_events(platform, job["id"]))
    finally:
        comfy.stop()
    print(f"\nfake ComfyUI, 30 steps: {len(percents)} progress events {percents}")
