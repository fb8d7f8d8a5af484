"""In-process optimum-neuron backend for AWS Inferentia2 (inf2) instances.

Same job mapping as the diffusers backend; pipelines come from ``optimum.neuron`` (imported lazily)
and load models compiled ahead of time for fixed shapes: the model store holds the compiled folder
(kind ``neuron``), whose ``unet/config.json`` records the static shapes under ``neuron``. A job whose size
or image count differs from the compiled one is rejected as an input error instead of triggering a
recompile on the instance. Neuron pipelines take no torch generator: the seed is set globally before
each call. optimum-neuron and the Neuron SDK are not installed on the development machines (they need
the Neuron DLAMI); the argument mapping and the shape checks are tested here with injected pipelines.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime.backends.base import Backend, BackendUnavailable, JobContext, JobInputError
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_batch import JobArgs


class NeuronBackend(DiffusersBackend):
    name = "neuron"

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        kwargs.setdefault("device", "neuron")
        kwargs.setdefault("generator_factory", lambda seed: None)
        super().__init__(config, **kwargs)
        if self._factory is None:
            self._factory = self._load_pipeline

    def _load_pipeline(self, path: Path, task: str) -> Any:
        try:
            from optimum import neuron
        except ImportError as exc:
            raise BackendUnavailable(f"the neuron backend needs optimum-neuron installed: {exc}") from exc
        cls = neuron.NeuronStableDiffusionImg2ImgPipeline if task == "img2img" else neuron.NeuronStableDiffusionPipeline
        return cls.from_pretrained(str(path))

    def compiled_config(self) -> dict[str, int]:
        """The static shapes the compiler recorded in the model's unet/config.json (empty when absent)."""
        if self._model is None:
            return {}
        config = self._model[1] / "unet" / "config.json"
        if not config.is_file():
            return {}
        shapes = json.loads(config.read_text()).get("neuron", {})
        return {k: int(v) for k, v in shapes.items() if k.startswith("static_") and isinstance(v, int | str)
                and str(v).isdigit()}

    def compiled_shape(self) -> tuple[int, int] | None:
        """(width, height) in pixels; the compiler records latent sizes (pixels / 8)."""
        shapes = self.compiled_config()
        width, height = shapes.get("static_width"), shapes.get("static_height")
        return (width * 8, height * 8) if width and height else None

    def _job_args(self, ctx: JobContext) -> JobArgs:
        job = super()._job_args(ctx)
        if job.loras:  # the API refuses them on Neuron fleets (runtime.backends.base CATALOG lora_tasks)
            raise JobInputError("inputs.loras: the Neuron backend runs graphs compiled with their weights and cannot "
                                "add a LoRA per job")
        shape = self.compiled_shape()
        if shape and job.image is None and (job.width, job.height) != shape:
            raise JobInputError(f"model compiled for {shape[0]}x{shape[1]}, job asks {job.width}x{job.height}")
        per_prompt = self.compiled_config().get("static_num_images_per_prompt")
        if per_prompt and job.count != per_prompt:
            raise JobInputError(f"model compiled for {per_prompt} image(s) per prompt, job asks {job.count}")
        return job

    def _call_arguments(self, jobs: Sequence[JobArgs]) -> dict[str, Any]:
        if len(jobs) != 1:
            raise JobInputError("the neuron backend runs one job per call (its batch size is fixed at compile time)")
        job = jobs[0]
        args = super()._call_arguments(jobs)
        args.pop("generator", None)
        # One prompt, the compiled number of images per prompt (the UNet's static batch).
        args.update(prompt=job.prompt, negative_prompt=job.negative_prompt or None, num_images_per_prompt=job.count)
        if "image" in args:
            args["image"] = job.image
        _seed(job.seed)
        return args

    # Issue 44: torch.manual_seed(seed) once, then the compiled batch: one seed draws every image of the job.
    seeds_each_image = False
    # A compiled Neuron model has a fixed batch size: never batched by the agent, one call per job.
    supports_batching = False
    batch_key = Backend.batch_key
    run_batch = Backend.run_batch


def _seed(seed: int) -> None:
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
