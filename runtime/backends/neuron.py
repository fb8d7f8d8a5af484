"""In-process optimum-neuron backend for AWS Inferentia2 (inf2) instances.

Same job mapping as the diffusers backend; pipelines come from ``optimum.neuron`` (imported lazily)
and load models compiled ahead of time for fixed shapes: the model store holds the compiled folder,
and a job whose width/height differ from the compiled shape is rejected as an input error instead of
triggering a recompile on the instance. Verified here with injected fakes only; see docs/worker.md.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendUnavailable, JobContext, JobInputError
from runtime.backends.diffusers import DiffusersBackend


class NeuronBackend(DiffusersBackend):
    name = "neuron"

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("device", "neuron")
        kwargs.setdefault("generator_factory", lambda seed: None)
        super().__init__(config, **kwargs)

    def _load_pipeline(self, path: Path, task: str) -> Any:
        try:
            from optimum import neuron
        except ImportError as exc:
            raise BackendUnavailable(f"the neuron backend needs optimum-neuron installed: {exc}") from exc
        cls = neuron.NeuronStableDiffusionImg2ImgPipeline if task == "img2img" else neuron.NeuronStableDiffusionPipeline
        return cls.from_pretrained(str(path))

    def compiled_shape(self) -> tuple[int, int] | None:
        """(width, height) recorded by the compiler in the model's config.json, when present."""
        if self._model is None:
            return None
        config = self._model[1] / "unet" / "config.json"
        if not config.is_file():
            return None
        shapes = json.loads(config.read_text()).get("neuron", {})
        width, height = shapes.get("static_width"), shapes.get("static_height")
        return (int(width) * 8, int(height) * 8) if width and height else None

    def _arguments(self, ctx: JobContext) -> dict[str, Any]:
        args = super()._arguments(ctx)
        args.pop("generator", None)  # Neuron pipelines take no torch generator; the seed is set globally
        shape = self.compiled_shape()
        if shape and "width" in args and (args["width"], args["height"]) != shape:
            raise JobInputError(f"model compiled for {shape[0]}x{shape[1]}, job asks {args['width']}x{args['height']}")
        return args
