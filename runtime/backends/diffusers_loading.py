"""Loading a model-store entry into a diffusers pipeline, and the speed settings applied to it.

Two layouts come from the model store: a diffusers folder (kind ``diffusers``: model_index.json plus
component folders) and a single-file checkpoint (kind ``checkpoint``: one .safetensors file). A single
file is loaded with diffusers' ``from_single_file`` against the diffusers configs uploaded beside it
(model_index.json and the component folders' config files, no weights): an instance never asks the Hub
for configs at run time (``local_files_only``), so a checkpoint without them is an input error that
says what to upload. Everything imports diffusers/torch lazily.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from runtime.backends.base import BackendUnavailable, JobInputError
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.model_store.video_kinds import VIDEO_PIPELINES

log = logging.getLogger(__name__)
WEIGHT_SUFFIXES = (".safetensors", ".ckpt")

# Sampler names jobs use (A1111's, which most clients send, and diffusers' class names) -> (class, config overrides).
SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "euler": ("EulerDiscreteScheduler", {}),
    "euler a": ("EulerAncestralDiscreteScheduler", {}),
    "dpm++ 2m": ("DPMSolverMultistepScheduler", {}),
    "dpm++ 2m karras": ("DPMSolverMultistepScheduler", {"use_karras_sigmas": True}),
    "dpm++ sde": ("DPMSolverSinglestepScheduler", {}),
    "ddim": ("DDIMScheduler", {}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "lms": ("LMSDiscreteScheduler", {}),
    "heun": ("HeunDiscreteScheduler", {}),
    "pndm": ("PNDMScheduler", {}),
}


def _libraries() -> tuple[Any, Any]:
    try:
        import diffusers
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"the diffusers backend needs diffusers and torch installed "
                                 f"(pip install '.[diffusers]'): {exc}") from exc
    return diffusers, torch


def config_folder(checkpoint: Path) -> Path | None:
    """Where the diffusers configs of a single-file checkpoint are: beside it, or in a ``config`` folder."""
    for folder in (checkpoint.parent, checkpoint.parent / "config"):
        if (folder / "model_index.json").is_file():
            return folder
    return None


def family(pipe: Any) -> str:
    return "sdxl" if "XL" in type(pipe).__name__ else "sd"


def load(path: Path, options: DiffusersOptions, device: str) -> Any:
    """The text-to-image pipeline of the model at ``path`` (folder or single file), optimised for ``device``;
    a diffusers folder of a video pipeline (``model_store.video_kinds.VIDEO_PIPELINES``) loads as that pipeline."""
    diffusers, _ = _libraries()
    dtype = options.torch_dtype(device)
    try:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise JobInputError(f"{path} is not a diffusers folder (no model_index.json); upload the model "
                                    f"as kind 'diffusers' (a video pipeline: 'video') or as one .safetensors "
                                    f"checkpoint")
            class_name = json.loads((path / "model_index.json").read_text()).get("_class_name")
            # A video pipeline (AnimateDiff: base + motion adapter) loads as itself; AutoPipeline maps images only.
            auto = diffusers.DiffusionPipeline if class_name in VIDEO_PIPELINES else \
                diffusers.AutoPipelineForText2Image
            pipe = auto.from_pretrained(str(path), torch_dtype=dtype, local_files_only=True)
        elif path.suffix in WEIGHT_SUFFIXES:
            configs = config_folder(path)
            if configs is None:
                raise JobInputError(f"checkpoint {path.name} has no diffusers configs beside it: upload "
                                    f"model_index.json and each component's config folder with the checkpoint")
            class_name = json.loads((configs / "model_index.json").read_text())["_class_name"]
            pipeline_class = getattr(diffusers, class_name)
            pipe = pipeline_class.from_single_file(str(path), config=str(configs), torch_dtype=dtype,
                                                   local_files_only=True)
            pipe = diffusers.AutoPipelineForText2Image.from_pipe(pipe)
        else:
            raise JobInputError(f"{path.name}: the diffusers backend loads a diffusers folder or a "
                                f"{'/'.join(WEIGHT_SUFFIXES)} checkpoint")
    except (OSError, ValueError, KeyError, AttributeError) as exc:
        raise JobInputError(f"model at {path} could not be loaded by diffusers: {exc}") from exc
    return optimise(pipe, options, device)


def optimise(pipe: Any, options: DiffusersOptions, device: str) -> Any:
    """Device, scaled-dot-product attention, channels_last; compile is applied per bucket by the backend."""
    import torch
    from diffusers.models.attention_processor import AttnProcessor2_0

    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    for name in ("unet", "vae"):
        module = getattr(pipe, name, None)
        if module is not None and hasattr(module, "set_attn_processor"):
            module.set_attn_processor(AttnProcessor2_0())  # torch's fused SDPA (flash / memory-efficient kernels)
            if options.channels_last:
                module.to(memory_format=torch.channels_last)
    return pipe


def make_scheduler(base: Any, name: str | None) -> Any:
    """A fresh scheduler for one call: the model's own (``name`` None) or the named one over its config."""
    import diffusers

    if name is None:
        return type(base).from_config(base.config)
    by_class = {cls.lower(): (cls, {}) for cls, _ in SCHEDULERS.values()}
    entry = SCHEDULERS.get(name.strip().lower()) or by_class.get(name.strip().lower())
    if entry is None:
        raise JobInputError(f"inputs.scheduler {name!r} is not one of: {', '.join(sorted(SCHEDULERS))} "
                            f"(or a diffusers scheduler class name)")
    cls, overrides = entry
    return getattr(diffusers, cls).from_config(base.config, **overrides)


def image_to_image(diffusers: Any, pipe: Any) -> Any:
    """The img2img pipeline over the same components (no second copy of the weights)."""
    return diffusers.AutoPipelineForImage2Image.from_pipe(pipe)


def compile_unet(pipe: Any, mode: str, device: str) -> Any:
    """A compiled UNet for the pipeline (Inductor), with the settings diffusers recommends for GPUs."""
    import torch

    if device.startswith("cuda"):
        inductor = torch._inductor.config
        inductor.conv_1x1_as_mm = True
        inductor.coordinate_descent_tuning = True
        inductor.epilogue_fusion = False
        inductor.coordinate_descent_check_all_directions = True
    torch._inductor.config.fx_graph_cache = True
    return torch.compile(pipe.unet, mode=mode if device.startswith("cuda") else "default", fullgraph=True)
