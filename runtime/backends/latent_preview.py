"""Cheap previews from a diffusion pipeline's latents (issue 38): the linear latent -> RGB approximation.

A 4-channel Stable Diffusion latent maps to a rough RGB image with one 4x3 matrix (and, for SDXL, a bias): one
small matrix product per preview, no VAE decode. The factors are those ComfyUI uses for its ``latent2rgb``
preview method (comfy/latent_formats.py, classes ``SD15`` and ``SDXL``, ComfyUI 0.3.64), and the mapping to
pixels is its ``preview_to_image``: ``(x + 1) / 2`` clamped to 0..1, times 255. The image is 1/8 of the output's
side (a latent pixel each): a 1024x1024 job gives a 128x128 preview.

The diffusers backend makes one at most every ``PREVIEW_EVERY_STEPS`` steps and only when the job's preview sink
says one is due (``JobContext.preview_due``: at most one per job every few seconds), so a job without previews,
or between previews, pays nothing. The matrix product runs on the backend's thread (it needs the tensor of that
step); the JPEG encoding runs on the preview uploader's thread (``jpeg_frame`` defers it).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

PREVIEW_EVERY_STEPS = 5  # N: a diffusers job is looked at for a preview every N steps
SD15_FACTORS = ((0.3512, 0.2297, 0.3227), (0.3250, 0.4974, 0.2350), (-0.2829, 0.1762, 0.2721),
                (-0.2120, -0.2616, -0.7177))
SDXL_FACTORS = ((0.3651, 0.4232, 0.4341), (-0.2533, -0.0042, 0.1068), (0.1076, 0.1111, -0.0362),
                (-0.3165, -0.2492, -0.2188))
SDXL_BIAS = (0.1084, -0.0175, -0.0011)


def latent_rgb(latent: Any, xl: bool) -> Any | None:
    """One image's latent (a torch tensor, channels x h x w) as an h x w x 3 uint8 numpy array; None when it is not
    a 4-channel latent (other model families have other factors: no preview rather than a wrong one)."""
    if getattr(latent, "ndim", 0) != 3 or latent.shape[0] != 4:
        return None
    factors = latent.new_tensor(SDXL_FACTORS if xl else SD15_FACTORS)
    rgb = latent.detach().float().permute(1, 2, 0) @ factors.float()
    if xl:
        rgb = rgb + latent.new_tensor(SDXL_BIAS).float()
    return ((rgb + 1.0) / 2.0).clamp(0.0, 1.0).mul(255.0).round().byte().cpu().numpy()


def jpeg_frame(rgb: Any, quality: int = 80) -> Callable[[], tuple[bytes, str]]:
    """A preview frame (``JobContext.offer_preview``): the JPEG encoding of ``rgb``, done when the uploader calls it."""

    def encode() -> tuple[bytes, str]:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), "image/jpeg"

    return encode
