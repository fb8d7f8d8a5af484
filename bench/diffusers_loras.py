"""Tiny LoRAs for the tiny pipelines of bench.diffusers_models (issue 40): random low-rank adapters on the UNet's
attention projections, saved the way diffusers' training scripts save them (``pytorch_lora_weights.safetensors``,
keys ``unet.<module>.lora_A/B.weight``), so ``load_lora_weights`` reads them like a LoRA from the Hub. Tests, local
mode and the bench build them from here; each is seeded, so the same call makes the same file."""

from __future__ import annotations

from pathlib import Path

LORA_FILE = "pytorch_lora_weights.safetensors"
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")


def tiny_lora(base: Path, folder: Path, seed: int = 0, rank: int = 4, scale: float = 0.5) -> Path:
    """A rank-``rank`` LoRA for the UNet of the diffusers folder ``base``, saved in ``folder``; returns the file.
    Both of its matrices are random (``scale``), so it changes the images at weight 1.0 (a trained LoRA's B is
    learnt; a fresh one's is zero)."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(str(base), subfolder="unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=list(TARGETS)))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * scale)
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    folder.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(str(folder), unet_lora_layers=layers, weight_name=LORA_FILE,
                                              safe_serialization=True)
    return folder / LORA_FILE
