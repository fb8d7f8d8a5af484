"""In-process Hugging Face diffusers backend (CUDA).

``diffusers`` and ``torch`` are imported lazily, on the first model load, so the agent and its tests
run where they are not installed; tests inject ``pipeline_factory`` (path, task) -> pipeline and
``generator_factory`` (seed) -> generator. A pipeline is any callable taking diffusers' keyword
arguments and returning an object with ``.images`` (PIL images). Cancellation is observed each step
through ``callback_on_step_end``. Verified here with injected fakes only; see docs/worker.md.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    BackendUnavailable,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)

log = logging.getLogger(__name__)


class DiffusersBackend(Backend):
    name = "diffusers"

    def __init__(self, config: Any = None, *, pipeline_factory: Callable[[Path, str], Any] | None = None,
                 generator_factory: Callable[[int], Any] | None = None, device: str = "cuda", **_: Any) -> None:
        self.device = device
        self._pipeline_factory = pipeline_factory or self._load_pipeline
        self._generator_factory = generator_factory or self._torch_generator
        self._pipelines: dict[tuple[str, str], Any] = {}
        self._model: tuple[str, Path] | None = None

    # -- lazily imported runtime -----------------------------------------------------------------------
    def _load_pipeline(self, path: Path, task: str) -> Any:
        try:
            import diffusers
            import torch
        except ImportError as exc:
            raise BackendUnavailable(f"the diffusers backend needs diffusers and torch installed: {exc}") from exc
        cls = diffusers.AutoPipelineForImage2Image if task == "img2img" else diffusers.AutoPipelineForText2Image
        if path.is_file():
            pipe = diffusers.StableDiffusionPipeline.from_single_file(str(path), torch_dtype=torch.float16)
            pipe = cls.from_pipe(pipe)
        else:
            pipe = cls.from_pretrained(str(path), torch_dtype=torch.float16)
        return pipe.to(self.device)

    def _torch_generator(self, seed: int) -> Any:
        import torch

        return torch.Generator(device=self.device).manual_seed(seed)

    # -- Backend -------------------------------------------------------------------------------------
    def wait_ready(self, timeout: float) -> None:
        return None  # in-process: ready once imported; model loads are timed separately

    def check(self) -> dict[str, Any]:
        return {"backend": self.name, "ready": True, "device": self.device,
                "model": self._model[0] if self._model else None}

    def load_model(self, model_id: str, path: Path | None) -> None:
        if path is None:
            raise JobInputError(f"model {model_id!r} has no local files; the {self.name} backend needs them")
        if self._model and self._model[0] != model_id:
            self._pipelines.clear()  # one model resident at a time: free device memory first
        self._model = (model_id, path)

    def _pipeline(self, task: str) -> Any:
        if self._model is None:
            raise JobInputError("no model loaded")
        key = (self._model[0], task)
        if key not in self._pipelines:
            self._pipelines[key] = self._pipeline_factory(self._model[1], task)
        return self._pipelines[key]

    def _arguments(self, ctx: JobContext) -> dict[str, Any]:
        inputs = ctx.inputs
        args: dict[str, Any] = {
            "prompt": str(inputs.get("prompt", "")),
            "negative_prompt": inputs.get("negative_prompt") or None,
            "num_inference_steps": int(inputs.get("steps") or 30),
            "guidance_scale": float(inputs.get("guidance", 7.0)),
            "num_images_per_prompt": int(inputs.get("num_outputs") or 1),
            "generator": self._generator_factory(int(inputs.get("seed", 0) or 0)),
        }
        if ctx.input_images:
            from PIL import Image

            args["image"] = Image.open(io.BytesIO(next(iter(ctx.input_images.values())))).convert("RGB")
            args["strength"] = float(inputs.get("strength", 0.75))
        else:
            args["width"], args["height"] = int(inputs.get("width") or 512), int(inputs.get("height") or 512)
        return args

    def run(self, ctx: JobContext) -> BackendResult:
        pipe = self._pipeline(ctx.task)
        args = self._arguments(ctx)

        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            if ctx.cancel.is_set():
                raise JobInterrupted(f"job {ctx.job_id} interrupted at step {step}")
            return kwargs

        try:
            result = pipe(**args, callback_on_step_end=on_step_end)
        except JobInterrupted:
            raise
        except (RuntimeError, ValueError, TypeError) as exc:
            if "out of memory" in str(exc).lower():
                raise BackendUnavailable(f"{self.name} ran out of device memory: {exc}") from exc
            raise BackendError(f"{self.name} pipeline failed: {exc}") from exc
        outputs = []
        for i, image in enumerate(result.images):
            buf = io.BytesIO()
            image.save(buf, format="PNG")
            outputs.append(OutputFile(f"image-{i}.png", buf.getvalue(), "image/png"))
        return BackendResult(outputs=outputs, metadata={"backend": self.name, "model": self._model[0] if self._model
                                                        else None, "seed": int(ctx.inputs.get("seed", 0) or 0)})

    def close(self) -> None:
        self._pipelines.clear()
