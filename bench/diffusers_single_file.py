"""Write a diffusers SD 1.x folder as one original-layout (CompVis/LDM) .safetensors checkpoint.

Single-file checkpoints in the wild use the original Stable Diffusion key layout (``model.diffusion_model.``,
``first_stage_model.``, ``cond_stage_model.transformer.``). To load one through diffusers' real
``from_single_file`` on a machine with no downloads, tests need such a file: this renames a random-weight
pipeline's tensors into that layout (the inverse of diffusers' own conversion) and copies the diffusers
configs (no weights) beside it, the way the model store serves a checkpoint with its configs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"), ("conv2", "out_layers.3"),
           ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_VAE_ATTN = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out"))


def _rename(rest: str, pairs: tuple[tuple[str, str], ...]) -> str:
    head, _, leaf = rest.rpartition(".")
    for new, old in pairs:
        if head == new:
            return f"{old}.{leaf}"
    return rest


def _unet_key(key: str, layers: int, attn_up: set[int]) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    if key in top:
        return top[key]
    parts = key.split(".")
    if parts[0] == "down_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "downsamplers":
            return f"input_blocks.{(block + 1) * (layers + 1)}.0.op.{rest.removeprefix('conv.')}"
        slot = 1 + block * (layers + 1) + index
        if kind == "resnets":
            return f"input_blocks.{slot}.0.{_rename(rest, _RESNET)}"
        return f"input_blocks.{slot}.1.{rest}"
    if parts[0] == "mid_block":
        kind, index, rest = parts[1], int(parts[2]), ".".join(parts[3:])
        return f"middle_block.{index * 2}.{_rename(rest, _RESNET)}" if kind == "resnets" else f"middle_block.1.{rest}"
    if parts[0] == "up_blocks":
        block, kind, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
        if kind == "upsamplers":
            sub = 2 if block in attn_up else 1
            return f"output_blocks.{block * (layers + 1) + layers}.{sub}.{rest}"
        slot = block * (layers + 1) + index
        if kind == "resnets":
            return f"output_blocks.{slot}.0.{_rename(rest, _RESNET)}"
        return f"output_blocks.{slot}.1.{rest}"
    raise ValueError(f"no original-layout name for UNet tensor {key}")


def _vae_key(key: str, tensor: Any, up_blocks: int) -> tuple[str, Any]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    top = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in top:
        return top[key], tensor
    side, parts = key.split(".")[0], key.split(".")[1:]
    if parts[0] == "mid_block" and parts[1] == "attentions":
        name = _rename(".".join(parts[3:]), _VAE_ATTN)
        return f"{side}.mid.attn_1.{name}", (tensor[:, :, None, None] if tensor.ndim == 2 else tensor)
    if parts[0] == "mid_block":
        rest = ".".join(parts[3:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.mid.block_{int(parts[2]) + 1}.{rest}", tensor
    level = int(parts[1]) if side == "encoder" else up_blocks - 1 - int(parts[1])
    where = "down" if side == "encoder" else "up"
    if parts[2] in ("downsamplers", "upsamplers"):
        return f"{side}.{where}.{level}.{parts[2][:-2]}.{'.'.join(parts[4:])}", tensor
    rest = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
    return f"{side}.{where}.{level}.block.{parts[3]}.{rest}", tensor


def write_single_file(folder: Path, target: Path) -> Path:
    """``folder`` (a saved SD 1.x diffusers pipeline) -> ``target`` .safetensors, configs copied beside it."""
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save_file

    pipe = StableDiffusionPipeline.from_pretrained(str(folder), local_files_only=True)
    layers = pipe.unet.config.layers_per_block
    attn_up = {i for i, kind in enumerate(pipe.unet.config.up_block_types) if "CrossAttn" in kind}
    tensors: dict[str, Any] = {}
    for key, value in pipe.unet.state_dict().items():
        tensors["model.diffusion_model." + _unet_key(key, layers, attn_up)] = value
    up_blocks = len(pipe.vae.config.up_block_types)
    for key, value in pipe.vae.state_dict().items():
        name, tensor = _vae_key(key, value, up_blocks)
        tensors["first_stage_model." + name] = tensor
    for key, value in pipe.text_encoder.state_dict().items():  # transformers >= 5.6 drops the text_model level
        name = key if key.startswith("text_model.") else "text_model." + key
        tensors["cond_stage_model.transformer." + name] = value
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(target))
    shutil.copy(folder / "model_index.json", target.parent / "model_index.json")
    for component in json.loads((folder / "model_index.json").read_text()):
        source = folder / component
        if source.is_dir():
            shutil.copytree(source, target.parent / component, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target
