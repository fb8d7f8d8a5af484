"""Random-weight diffusers pipelines built from configs: nothing is downloaded (no weights reach these machines).

``tiny_sd`` (SD 1.x layout, a few hundred KB) serves the CPU tests; ``sdxl`` builds the SDXL base
architecture (same shapes as the real model, random weights) for bench/gpu_bench.py, or a tiny SDXL-shaped
one with ``tiny=True``; ``tiny(family, folder, seed)`` builds the tiny form of each family in
``TINY_FAMILIES``. The tokenizer is made from a byte-level vocabulary written here, the way CLIP's is
laid out (byte characters, the same with ``</w>``, start/end tokens), so no tokenizer files are fetched.
Pipelines are saved in the layout the model store serves for kind ``diffusers`` (model_index.json plus
component folders, safetensors weights).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any


def _byte_chars() -> list[str]:
    """The 256 printable characters CLIP's byte-level BPE uses for bytes (GPT-2's table)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), 256))
    chars, extra = [], 0
    for b in range(256):
        if b in keep:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_tokenizer(folder: Path) -> Path:
    """A CLIP-style tokenizer folder (vocab.json, merges.txt, configs) with a byte-level vocabulary."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _byte_chars()
    vocab: dict[str, int] = {}
    for token in [*chars, *(c + "</w>" for c in chars), "a</w>", "ca", "cat</w>", "<|startoftext|>", "<|endoftext|>"]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"}))
    return folder


def _tokenizer(folder: Path) -> Any:
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(str(write_tokenizer(folder)))


def _text_encoder(hidden: int, layers: int, heads: int, intermediate: int, projection: int | None,
                  act: str = "quick_gelu") -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(vocab_size=49408, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                            intermediate_size=intermediate, projection_dim=projection or hidden, hidden_act=act,
                            max_position_embeddings=77, bos_token_id=49406, eos_token_id=49407, pad_token_id=49407)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def tiny_sd(folder: Path, seed: int = 0) -> Path:
    """A tiny SD 1.x pipeline (UNet, VAE, CLIP text encoder, tokenizer, Euler scheduler) saved at ``folder``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, attention_head_dim=2, norm_num_groups=4)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 16),
                        layers_per_block=1, norm_num_groups=4, sample_size=32,
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as scratch:  # not in the model: a store path is
        pipe = StableDiffusionPipeline(                                     # never hidden (model_store.layout)
            vae=vae, text_encoder=_text_encoder(32, 2, 4, 37, None), tokenizer=_tokenizer(Path(scratch)),
            unet=unet, scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085,
                                                        beta_end=0.012, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder


# The tiny form of every pipeline family the fleet serves, by family name: tests, local mode
# (fleetdev/local/models.py) and the bench build them from here. Video and LoRA work add their families.
TINY_FAMILIES: dict[str, str] = {
    "sd15": "SD 1.x layout (StableDiffusionPipeline): UNet, VAE, one CLIP text encoder",
    "sdxl": "SDXL layout (StableDiffusionXLPipeline): two text encoders, text-time conditioning",
}


def tiny(family: str, folder: Path, seed: int = 0) -> Path:
    """The tiny random-weight pipeline of ``family`` (a TINY_FAMILIES key), seeded, saved at ``folder``."""
    if family == "sd15":
        return tiny_sd(folder, seed=seed)
    if family == "sdxl":
        return sdxl(folder, tiny=True, seed=seed)
    raise ValueError(f"tiny pipeline family {family!r}: must be one of {', '.join(TINY_FAMILIES)}")


def _sdxl_unet(tiny: bool) -> Any:
    from diffusers import UNet2DConditionModel

    common = {"in_channels": 4, "out_channels": 4, "addition_embed_type": "text_time", "use_linear_projection": True,
              "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
              "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D")}
    if tiny:
        return UNet2DConditionModel(
            **common, sample_size=16, layers_per_block=1, block_out_channels=(8, 16, 32), attention_head_dim=(2, 2, 4),
            transformer_layers_per_block=(1, 1, 2), cross_attention_dim=64, norm_num_groups=4,
            addition_time_embed_dim=8, projection_class_embeddings_input_dim=8 * 6 + 32)
    # SDXL base 1.0's UNet config (2.6 B parameters).
    return UNet2DConditionModel(
        **common, sample_size=128, layers_per_block=2, block_out_channels=(320, 640, 1280),
        attention_head_dim=(5, 10, 20), transformer_layers_per_block=(1, 2, 10), cross_attention_dim=2048,
        addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)


def _sdxl_vae(tiny: bool) -> Any:
    from diffusers import AutoencoderKL

    if tiny:
        return AutoencoderKL(latent_channels=4, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4,
                             down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                             sample_size=32, scaling_factor=0.13025)
    return AutoencoderKL(latent_channels=4, block_out_channels=(128, 256, 512, 512), layers_per_block=2,
                         down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
                         sample_size=1024, scaling_factor=0.13025, force_upcast=False)


def sdxl(folder: Path, tiny: bool = False, seed: int = 0) -> Path:
    """SDXL base architecture with random weights (fp16 on disk when full-size) saved at ``folder``."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLPipeline

    torch.manual_seed(seed)
    if tiny:
        te1, te2 = _text_encoder(32, 2, 4, 37, None), _text_encoder(32, 2, 4, 37, 32, act="gelu")
    else:  # CLIP ViT-L/14 and OpenCLIP ViT-bigG/14 text towers
        te1, te2 = _text_encoder(768, 12, 12, 3072, None), _text_encoder(1280, 32, 20, 5120, 1280, act="gelu")
    with tempfile.TemporaryDirectory(prefix="tiny-tokenizer-") as scratch:
        pipe = StableDiffusionXLPipeline(
            vae=_sdxl_vae(tiny), text_encoder=te1, text_encoder_2=te2, tokenizer=_tokenizer(Path(scratch) / "1"),
            tokenizer_2=_tokenizer(Path(scratch) / "2"), unet=_sdxl_unet(tiny),
            scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                             timestep_spacing="leading", steps_offset=1))
        if not tiny:
            pipe = pipe.to(torch.float16)
        pipe.save_pretrained(str(folder), safe_serialization=True)
    return folder
