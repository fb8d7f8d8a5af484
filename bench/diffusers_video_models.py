"""A tiny AnimateDiff pipeline (SD 1.x layout + a motion adapter) built from configs with random weights: what the
diffusers backend's video tests run on the CPU (nothing is downloaded). Saved in the layout the model store serves
for kind ``video``: model_index.json (``AnimateDiffPipeline``) plus component folders, the motion adapter
among them (runtime/backends/diffusers_video.py)."""

from __future__ import annotations

from pathlib import Path

from bench.diffusers_models import _text_encoder, _tokenizer


def tiny_animatediff(folder: Path, seed: int = 0) -> Path:
    import torch
    from diffusers import (
        AnimateDiffPipeline,
        AutoencoderKL,
        EulerDiscreteScheduler,
        MotionAdapter,
        UNet2DConditionModel,
    )

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    adapter = MotionAdapter(block_out_channels=(8, 16), motion_layers_per_block=1, motion_num_attention_heads=2,
                            motion_norm_num_groups=4, motion_max_seq_length=32)
    pipe = AnimateDiffPipeline(
        vae=vae, text_encoder=_text_encoder(32, 2, 4, 37, None), tokenizer=_tokenizer(folder / ".tok"), unet=unet,
        motion_adapter=adapter, scheduler=EulerDiscreteScheduler(beta_schedule="linear", beta_start=0.00085,
                                                                 beta_end=0.012, steps_offset=1))
    pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
