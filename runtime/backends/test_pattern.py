"""test-pattern: a CPU backend that renders a deterministic PNG from the job's inputs.

Local mode, the integration tests and the agent benchmark use it. The image depends only on the seed,
the prompt's hash and the size, so the same job always gives the same bytes; its outputs metadata and
the PNG's text chunk say ``test-pattern`` so nobody mistakes it for a model's output.
"""

from __future__ import annotations

import hashlib
import io
import random
import time
from typing import Any

from PIL import Image, ImageDraw
from PIL.PngImagePlugin import PngInfo

from runtime.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)

LABEL = "test-pattern"
MAX_SIDE = 2048


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


def _size(inputs: dict[str, Any]) -> tuple[int, int]:
    try:
        width, height = int(inputs.get("width") or 512), int(inputs.get("height") or 512)
    except (TypeError, ValueError) as exc:
        raise JobInputError(f"width/height must be integers: {exc}") from exc
    if not (8 <= width <= MAX_SIDE and 8 <= height <= MAX_SIDE):
        raise JobInputError(f"width and height must be from 8 to {MAX_SIDE}, got {width}x{height}")
    return width, height


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
        delay = float(ctx.inputs.get("test_pattern_delay_seconds", self.delay_seconds))
        if ctx.cancel.wait(max(0.0, delay)):
            raise JobInterrupted(f"job {ctx.job_id} interrupted")
        return self._render(ctx)

    def batch_key(self, ctx: JobContext) -> tuple[Any, ...]:
        """Jobs of one size and delay share a call (dynamic batching, runtime.worker.batching)."""
        return (ctx.model, _size(ctx.inputs), ctx.inputs.get("test_pattern_delay_seconds", self.delay_seconds))

    def run_batch(self, ctxs: list[JobContext]) -> list[BackendResult | BackendError]:
        """One delay for the whole batch, as a GPU call costs about one job's time; like the diffusers backend,
        the call stops early only when every job is canceled, and a canceled job ends interrupted."""
        delay = float(ctxs[0].inputs.get("test_pattern_delay_seconds", self.delay_seconds))
        end = time.monotonic() + max(0.0, delay)
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
        inputs = ctx.inputs
        width, height = _size(inputs)
        started = time.monotonic()
        seed = int(inputs.get("seed", 0) or 0)
        count = max(1, min(int((inputs.get("num_outputs") or 1) or 1), 4))
        outputs = [
            OutputFile(f"image-{i}.png", render(str(inputs.get("prompt", "")), seed + i, width, height), "image/png")
            for i in range(count)
        ]
        return BackendResult(
            outputs=outputs,
            metadata={"generator": LABEL, "seed": seed, "width": width, "height": height,
                      "render_ms": round((time.monotonic() - started) * 1000, 1)},
        )
