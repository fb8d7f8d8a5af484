"""Typed job contexts for backend tests: every spec goes through the API's rules (``JobSpec.parse``), as the
worker reads a queue message, so a test cannot hand a backend a job the API would have refused."""

from __future__ import annotations

import base64
import io
from typing import Any

from runtime.backends.base import JobContext
from runtime.jobs.schema import JobSpec


def png(width: int = 8, height: int = 8, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def job_spec(model: str = "m", task: str = "txt2img", **inputs: Any) -> JobSpec:
    """A validated spec; image tasks get a prompt, img2img an inline image, unless given."""
    defaults: dict[str, Any] = {}
    if task != "comfyui-workflow":
        defaults["prompt"] = "a cat"
    if task == "img2img":
        defaults["image"] = data_uri(png())
    return JobSpec.parse({"model": model, "task": task, "inputs": {**defaults, **inputs}}, allow_loopback=True)


def job_context(job_id: str = "j_test", model: str = "m", task: str = "txt2img",
                images: dict[str, bytes] | None = None, **inputs: Any) -> JobContext:
    """A backend's view of one attempt: the typed spec and (img2img) the fetched image bytes."""
    spec = job_spec(model, task, **inputs)
    if images is None and task == "img2img":
        images = {"image": png()}
    return JobContext(job_id, spec, input_images=dict(images or {}))
