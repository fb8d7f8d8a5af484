"""test-pattern: a CPU backend that renders a deterministic PNG (or, for a video task, a video) from the job's inputs.

Local mode, the integration tests and the agent benchmark use it. The image depends only on the seed,
the prompt's hash and the size, so the same job always gives the same bytes; its outputs metadata and
the PNG's text chunk say ``test-pattern`` so nobody mistakes it for a model's output. Every job waits
``test_pattern_delay_seconds`` (agent config) in place of inference time; a job cannot set its own delay
(the API refuses unknown inputs, and the worker reads messages with the API's rules).
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from collections.abc import Iterator
from typing import Any

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from runtime.backends import test_pattern_video as video_frames
from runtime.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)
from runtime.jobs.models import Img2VideoInputs, Txt2VideoInputs, WorkflowInputs
from runtime.video.encode import POSTER_CONTENT_TYPE, encode_video

LABEL = "test-pattern"
WORKFLOW_SIZE = (512, 512)  # what it draws for a comfyui-workflow job (it does not run graphs)


def render(prompt: str, seed: int, width: int, height: int) -> bytes:
    """A deterministic PNG: colour bands from the seed and the prompt hash, labelled test-pattern."""
    digest = hashlib.sha256(f"{seed}:{prompt}".encode()).digest()
    rng = random.Random(digest)
    image = Image.new("RGB", (width, height), tuple(digest[:3]))
    draw = ImageDraw.Draw(image)
    bands = 8
    for i in range(bands):
        colour = (rng.randrange(256), rng.randrange(256), rng.randrange(256))
        x0 = i * width // bands
        draw.rectangle([x0, 0, (i + 1) * width // bands - 1, height // 2], fill=colour)
    draw.text((8, height // 2 + 8), f"{LABEL} seed={seed} {digest.hex()[:12]}", fill=(255, 255, 255))
    info = PngInfo()
    info.add_text("generator", LABEL)
    info.add_text("prompt_sha256", hashlib.sha256(prompt.encode()).hexdigest())
    info.add_text("seed", str(seed))
    buf = io.BytesIO()
    image.save(buf, format="PNG", pnginfo=info)
    return buf.getvalue()


def _preview_frame(step: int, steps: int) -> Any:
    """A 64x64 JPEG whose grey level is the share of steps done (the test pattern has no latents to show)."""

    def encode() -> tuple[bytes, str]:
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (int(255 * step / steps),) * 3).save(buf, format="JPEG", quality=70)
        return buf.getvalue(), "image/jpeg"

    return encode


def _size(ctx: JobContext) -> tuple[int, int]:
    """The job's size (the API's limits and defaults); img2img without one: the input image's size."""
    inputs = ctx.job.inputs
    if isinstance(inputs, WorkflowInputs):  # a graph the stand-in cannot run: a picture of a fixed size
        return WORKFLOW_SIZE
    if inputs.width is not None and inputs.height is not None:
        return inputs.width, inputs.height
    image = ctx.input_images.get("image")
    if image is None:
        raise JobInputError(f"a {ctx.task} job without width and height needs its input image")
    try:
        return Image.open(io.BytesIO(image)).size
    except (OSError, ValueError) as exc:
        raise JobInputError(f"inputs.image is not an image: {exc}") from exc


class TestPatternBackend(Backend):
    """CPU test-pattern renderer with a configurable delay standing in for inference time."""

    __test__ = False  # not a pytest class
    name = LABEL
    supports_batching = True
    uses_model_files = False  # renders without weights

    def __init__(self, config: Any = None, *, delay_seconds: float | None = None, **_: Any) -> None:
        if delay_seconds is None:
            delay_seconds = float(getattr(config, "test_pattern_delay_seconds", 0.5))
        self.delay_seconds = delay_seconds

    def wait_ready(self, timeout: float) -> None:
        return None

    def run(self, ctx: JobContext) -> BackendResult:
        self._stand_in_for_inference(ctx)
        return self._render(ctx)

    def _stand_in_for_inference(self, ctx: JobContext) -> None:
        """Wait ``delay_seconds`` as a model would compute; a cancel interrupts it, and, as the HTTP backends
        do, the job's time limit (``ctx.deadline``) ends it with a BackendError."""
        ctx.executing()  # the time limit counts from here (an in-process backend starts at once)
        delay = max(0.0, self.delay_seconds)
        left = delay if ctx.deadline is None else max(0.0, min(delay, ctx.deadline - time.monotonic()))
        # The wait is cut into the job's sampler steps, each reported as a model's step would be (issue 38).
        steps = max(1, int(getattr(ctx.job.inputs, "steps", None) or 1))
        end = time.monotonic() + left
        for step in range(1, steps + 1):
            if ctx.cancel.wait(max(0.0, end - time.monotonic()) / (steps - step + 1)):
                raise JobInterrupted(f"job {ctx.job_id} interrupted")
            ctx.report(step=step, steps=steps)
            if ctx.preview_due():  # issue 38: a stand-in preview, brighter as the steps go (encoded off this thread)
                ctx.offer_preview(_preview_frame(step, steps))
        if left < delay:
            raise BackendError(f"test-pattern job {ctx.job_id} ran past the job time limit")

    def batch_key(self, ctx: JobContext) -> tuple[Any, ...] | None:
        """Jobs of one size share a call (dynamic batching, runtime.worker.batching); a video runs alone."""
        if isinstance(ctx.job.inputs, Txt2VideoInputs):
            return None
        return (ctx.model, _size(ctx))

    def run_batch(self, ctxs: list[JobContext]) -> list[BackendResult | BackendError]:
        """One delay for the whole batch, as a GPU call costs about one job's time; like the diffusers backend,
        the call stops early only when every job is canceled, and a canceled job ends interrupted."""
        end = time.monotonic() + max(0.0, self.delay_seconds)
        while not all(ctx.cancel.is_set() for ctx in ctxs) and time.monotonic() < end:
            ctxs[0].cancel.wait(min(0.05, max(0.0, end - time.monotonic())))
        outcomes: list[BackendResult | BackendError] = []
        for ctx in ctxs:
            try:
                if ctx.cancel.is_set():
                    raise JobInterrupted(f"job {ctx.job_id} interrupted during its batch")
                outcomes.append(self._render(ctx))
            except BackendError as exc:
                outcomes.append(exc)
        return outcomes

    def _render(self, ctx: JobContext) -> BackendResult:
        inputs = ctx.job.inputs
        if isinstance(inputs, Txt2VideoInputs):
            return self._render_video(ctx, inputs)
        width, height = _size(ctx)
        started = time.monotonic()
        if isinstance(inputs, WorkflowInputs):
            prompt, seed, count = "", inputs.seed or 0, 1  # the graph's own seeds stay unknown to the stand-in
        else:
            prompt, seed, count = inputs.prompt, ctx.seed(), inputs.num_outputs
        outputs = [OutputFile(f"image-{i}.png", render(prompt, seed + i, width, height), "image/png")
                   for i in range(count)]
        return BackendResult(
            outputs=outputs,
            metadata={"generator": LABEL, "seed": seed, "width": width, "height": height,
                      "render_ms": round((time.monotonic() - started) * 1000, 1)},
        )

    def _render_video(self, ctx: JobContext, inputs: Txt2VideoInputs) -> BackendResult:
        """txt2video / img2video: frames streamed into the encoder one at a time (runtime.video.encode)."""
        started, seed = time.monotonic(), ctx.seed()
        image = ctx.input_images.get("image") if isinstance(inputs, Img2VideoInputs) else None
        try:
            still = video_frames.background(inputs.prompt, seed, inputs.width, inputs.height, image)
        except (OSError, ValueError) as exc:
            raise JobInputError(f"inputs.image is not an image: {exc}") from exc
        frames = self._interruptible(ctx, video_frames.frames(still, inputs.frames, seed))
        video = encode_video(ctx.report_frames(frames, inputs.frames),
                             width=inputs.width, height=inputs.height, fps=inputs.fps,
                             output_format=inputs.output_format, expected_frames=inputs.frames)
        return BackendResult(
            outputs=[OutputFile(f"video-0.{video.extension}", video.data, video.content_type, video=video.info()),
                     OutputFile("poster-0.png", video.poster, POSTER_CONTENT_TYPE)],
            metadata={"generator": LABEL, "seed": seed, "width": inputs.width, "height": inputs.height,
                      "frames": video.frames, "fps": video.fps, "encode_ms": video.encode_ms,
                      "render_ms": round((time.monotonic() - started) * 1000, 1)})

    @staticmethod
    def _interruptible(ctx: JobContext, frames: Iterator[Any]) -> Iterator[Any]:
        """The frames, stopping with JobInterrupted as soon as the job is canceled (checked between frames)."""
        for frame in frames:
            if ctx.cancel.is_set():
                raise JobInterrupted(f"job {ctx.job_id} interrupted while rendering its video")
            yield frame

