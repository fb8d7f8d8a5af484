"""A task the worker's backend does not serve fails at its claim, named, and nothing of it runs (issue 36): an API
without GENAI_TASKS (or a message from elsewhere) must never get an image for a video (the original bug: A1111
or diffusers answered txt2video with one still image, marked succeeded)."""

from __future__ import annotations

import pytest

from fleetdev.worker_support import Stack, make_agent
from runtime.backends.base import JobContext
from runtime.backends.test_pattern import TestPatternBackend

pytestmark = pytest.mark.integration


class ImageOnly(TestPatternBackend):
    """Renders like the test pattern, named as an image-only backend of the catalog (A1111)."""

    name = "a1111"

    def __init__(self) -> None:
        super().__init__(delay_seconds=0.0)
        self.ran: list[str] = []

    def run(self, ctx: JobContext):
        self.ran.append(ctx.task)
        return super().run(ctx)


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def test_a_video_job_on_an_image_only_backend_fails_at_its_claim(stack):
    video = stack.submit(task="txt2video", prompt="a wave", width=64, height=64, frames=4, fps=4, seed=1)
    image = stack.submit()
    backend = ImageOnly()
    agent = make_agent(stack, stack.config(), backend=backend)
    agent.run(max_jobs=2, idle_exit_seconds=5)
    record = stack.store.get(video)
    assert record["status"] == "failed" and record["error"]["code"] == "invalid-input"
    assert "does not serve txt2video jobs (it serves: txt2img, img2img)" in record["error"]["message"]
    assert backend.ran == ["txt2img"] and stack.store.get(image)["status"] == "succeeded"
