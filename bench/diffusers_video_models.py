"""AnimateDiff pipelines (SD 1.x layout + a motion adapter) built from configs with random weights: the tiny one the
diffusers backend's video tests run on the CPU, and the full-size one (SD 1.5's UNet, VAE and CLIP ViT-L text
encoder, AnimateDiff v1.5's motion adapter shapes: ``MotionAdapter()``'s defaults) the GPU bench's video phase
runs (nothing is downloaded). Saved in the layout the model store serves for kind ``video``: model_index.json
(``AnimateDiffPipeline``) plus component folders, the motion adapter among them
(runtime/backends/diffusers_video.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from bench.diffusers_models import _text_encoder, _tokenizer


def tiny_animatediff(folder: Path, seed: int = 0) -> Path:
    return animatediff(folder, tiny=True, seed=seed)


def animatediff(folder: Path, tiny: bool = False, seed: int = 0) -> Path:
    """An AnimateDiff pipeline saved at ``folder``: tiny (a few MB, CPU tests) or full-size (fp16 on disk)."""
    import torch
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        EulerDiscreteScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    if tiny:
        unet = UNet2DConditionModel(
            sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=32, attention_head_dim=2,
            norm_num_groups=4)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                            layers_per_block=1, norm_num_groups=4, sample_size=32,
                            down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
        adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_num_attention_heads=2,
                                motion_norm_num_groups=4, motion_max_seq_length=32)
        text_encoder = _text_encoder(32, 2, 4, 37, None)
    else:  # Stable Diffusion 1.5's configs; the adapter's defaults are AnimateDiff v1.5's shapes
        unet = UNet2DConditionModel(
            sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
            block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
        vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(128, 256, 512, 512),
                            layers_per_block=2, sample_size=512, down_block_types=("DownEncoderBlock2D",) * 4,
                            up_block_types=("UpDecoderBlock2D",) * 4)
        adapter = MotionAdapter()
        text_encoder = _text_encoder(768, 12, 12, 3072, None)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as scratch:  # not in the model: a store path is
        pipe = AnimateDiffPipeline(                                         # never hidden (model_store.layout)
            vae=vae, text_encoder=text_encoder, tokenizer=_tokenizer(Path(scratch)), unet=unet,
            motion_adapter=adapter, scheduler=EulerDiscreteScheduler(
                beta_schedule="linear", beta_start=0.00085, beta_end=0.012, steps_offset=1))
        if not tiny:
            pipe = pipe.to(torch.float16)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
