"""Job inputs -> diffusers call arguments, for one job or several compatible jobs run as one batch.

Jobs are compatible when one pipeline call can serve them all: same task, size, steps, guidance,
(img2img) strength and LoRA set with its weights (a call applies one set of adapters to every image, so
one job's LoRA never reaches another job's images). Each job keeps its own prompt, negative prompt, seed
and outputs: image ``i`` of a job is always drawn from its own generator seeded ``seed + i``, alone or in a
batch, so a job's images do not depend on what it was batched with (up to floating-point differences of
batched kernels).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runtime.backends.base import JobContext, JobInputError
from runtime.backends.diffusers_lora import LoraSet, lora_set
from runtime.jobs.models import Img2ImgInputs


@dataclass(frozen=True)
class JobArgs:
    prompt: str
    negative_prompt: str
    seed: int
    count: int  # images for this job
    width: int
    height: int
    steps: int
    guidance: float
    strength: float | None  # img2img only
    image: Any = None  # PIL image for img2img
    scheduler: str | None = None  # the job's sampler name (diffusers_loading.SCHEDULERS); None: the model's own
    loras: LoraSet = ()  # the job's LoRAs, (store id, weight) sorted (runtime.backends.diffusers_lora)

    @property
    def compat(self) -> tuple[Any, ...]:
        """Jobs with equal keys can share one pipeline call."""
        return (self.image is not None, self.width, self.height, self.steps, self.guidance, self.strength,
                self.scheduler, self.loras)


def job_args(ctx: JobContext) -> JobArgs:
    """One job's call arguments, read from its typed inputs (the API's limits and defaults). img2img runs at the
    input image's size; an image that does not decode is a JobInputError naming the input."""
    inputs = ctx.image_inputs()
    image, strength = None, None
    width, height = inputs.width, inputs.height
    if isinstance(inputs, Img2ImgInputs):
        data = ctx.input_images.get("image")
        if data is None:
            raise JobInputError("an img2img job reached the backend without its input image")
        from PIL import Image

        try:
            image = Image.open(io.BytesIO(data)).convert("RGB")
        except (OSError, ValueError) as exc:
            raise JobInputError(f"inputs.image is not an image: {exc}") from exc
        width, height = image.size
        strength = inputs.strength
        if int(inputs.steps * strength) < 1:  # diffusers' img2img denoises int(steps x strength) steps
            raise JobInputError(f"inputs.strength {strength} x inputs.steps {inputs.steps} leaves no denoising "
                                "step for the diffusers img2img pipeline; raise either")
    return JobArgs(prompt=inputs.prompt, negative_prompt=inputs.negative_prompt, seed=ctx.seed(),
                   count=inputs.num_outputs, width=width, height=height, steps=inputs.steps,
                   guidance=inputs.guidance, strength=strength, image=image, scheduler=inputs.scheduler,
                   loras=lora_set(inputs.loras))


def call_arguments(jobs: Sequence[JobArgs], generator: Callable[[int], Any]) -> dict[str, Any]:
    """One pipeline call for compatible ``jobs``: prompts, negatives and generators flattened per image."""
    first = jobs[0]
    if any(job.compat != first.compat for job in jobs):
        raise JobInputError("jobs of one batch must share task, size, steps, guidance, strength, scheduler and "
                            "LoRAs")
    args: dict[str, Any] = {
        "prompt": [job.prompt for job in jobs for _ in range(job.count)],
        "negative_prompt": [job.negative_prompt for job in jobs for _ in range(job.count)],
        "generator": [generator(job.seed + i) for job in jobs for i in range(job.count)],
        "num_inference_steps": first.steps,
        "guidance_scale": first.guidance,
        "num_images_per_prompt": 1,
    }
    if first.image is not None:
        args["image"] = [job.image for job in jobs for _ in range(job.count)]
        args["strength"] = first.strength
    else:
        args["width"], args["height"] = first.width, first.height
    return args


def split(images: Sequence[Any], jobs: Sequence[JobArgs]) -> list[list[Any]]:
    """The flat image list of one call, back into each job's images (in order)."""
    out, at = [], 0
    for job in jobs:
        out.append(list(images[at:at + job.count]))
        at += job.count
    return out


def chunks(counts: Sequence[int], compiled: Sequence[int], max_batch: int) -> list[list[int]]:
    """Compatible jobs (their image ``counts``, in order) cut into pipeline calls of at most ``max_batch`` jobs.

    With compiled batch sizes (``compiled``: image counts with a compiled graph), each call takes the longest
    run of the next jobs whose image total has a graph, so three jobs with graphs for 1, 2 and 4 run as 2 + 1
    on compiled graphs instead of 3 eager; a job that fits no graph runs alone. Without: ``max_batch`` a call.
    """
    out, i = [], 0
    while i < len(counts):
        take, total = 1, 0
        for j in range(i, min(len(counts), i + max_batch)):
            total += counts[j]
            if not compiled or total in compiled:
                take = j - i + 1
        out.append(list(range(i, i + take)))
        i += take
    return out
