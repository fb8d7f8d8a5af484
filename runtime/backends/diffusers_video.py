"""txt2video and img2video on the diffusers backend: AnimateDiff (a motion adapter over a Stable Diffusion 1.5
base), frames decoded from the latents in chunks and streamed to the encoder.

Why AnimateDiff: of the video families diffusers ships (AnimateDiff, LTX-Video, Wan, CogVideoX, Stable Video
Diffusion), it reuses the SD 1.5 checkpoints, VAE and schedulers this backend already loads (a motion adapter is
a few hundred MB beside a base the fleet may already cache; its GPU time and memory are not measured yet), and
its pipeline takes ``output_type="latent"``, so the frames can be decoded a chunk at a time instead of all
at once. Its limits: short clips (its motion modules were trained on 16 frames; longer clips loop the context),
and SD 1.5's look. LTX-Video and Wan give better motion at several times the memory and time; they are the next
families to add behind the same interface (``is_video``, ``render``).

img2video runs ``AnimateDiffVideoToVideoPipeline`` over the same components (``from_pipe``: no second copy of the
weights) with the input image held still as the source video, at ``IMG2VIDEO_STRENGTH``: the motion comes from
the adapter, the look from the image.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from runtime.model_store.video_kinds import VIDEO_PIPELINES  # model_index.json _class_name of kind 'video'

DECODE_CHUNK_FRAMES = 8  # frames decoded by the VAE at once: bounds the decoded frames held in memory
IMG2VIDEO_STRENGTH = 0.8


def is_video(pipe: Any) -> bool:
    return type(pipe).__name__ in VIDEO_PIPELINES


def render(pipe: Any, inputs: Any, generator: Any, on_step_end: Callable[..., dict[str, Any]],
           image: Any = None) -> Iterator[Any]:
    """Run the pipeline to latents, then yield the frames (HxWx3 uint8 arrays) decoded a chunk at a time."""
    import diffusers

    call: dict[str, Any] = {
        "prompt": inputs.prompt, "negative_prompt": inputs.negative_prompt or None,
        "num_inference_steps": inputs.steps, "guidance_scale": inputs.guidance, "width": inputs.width,
        "height": inputs.height, "generator": generator, "output_type": "latent",
        "callback_on_step_end": on_step_end}
    if image is None:
        latents = pipe(num_frames=inputs.frames, **call).frames
    else:
        still = image.convert("RGB").resize((inputs.width, inputs.height))
        video_pipe = diffusers.AnimateDiffVideoToVideoPipeline.from_pipe(pipe)
        latents = video_pipe(video=[still] * inputs.frames, strength=IMG2VIDEO_STRENGTH, **call).frames
    return decode(pipe.vae, latents, DECODE_CHUNK_FRAMES)


def decode(vae: Any, latents: Any, chunk: int) -> Iterator[Any]:
    """Latents (1, channels, frames, h, w) -> frames, ``chunk`` frames through the VAE at a time."""
    import torch

    frames = latents.shape[2]
    scale = vae.config.scaling_factor
    for start in range(0, frames, chunk):
        part = latents[0, :, start:start + chunk].permute(1, 0, 2, 3).to(vae.dtype) / scale
        with torch.no_grad():
            pixels = vae.decode(part).sample
        pixels = ((pixels.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        yield from pixels.permute(0, 2, 3, 1).cpu().numpy()
