"""What the diffusers backend needs from the host-RAM model tier, and how it swaps weights through it.

The tier itself (bounded, LRU, pinned buffers) lives in runtime/model_cache/ (issue 18); the backend only
needs ``HostRamTier``'s two calls. ``NoRamTier`` keeps nothing, so without a tier every switch reloads
from the local disk. Switching models of one architecture keeps the resident pipeline (and its compiled
graphs) and copies the other model's tensors into it: a host-to-GPU copy, about 0.1 s for SDXL's 5.3 GB
from pinned memory on an H200 (issue 19), instead of a disk load plus a recompile. The outgoing model is
copied to host memory only when the tier does not already hold it (weights never change while resident).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Protocol

# Pipeline components that hold weights (text encoders, UNet, VAE); tokenizers and schedulers have none.
WEIGHT_COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2", "transformer")


class HostRamTier(Protocol):
    """Bounded host-RAM store of loaded weights, keyed by ``<model id>@<architecture>``."""

    def get(self, key: str) -> Mapping[str, Any] | None:
        """The tensors put under ``key`` (name -> CPU tensor), or None."""

    def put(self, key: str, tensors: Mapping[str, Any], nbytes: int) -> bool:
        """Keep ``tensors`` (``nbytes`` in all) if the bound allows; False when it does not."""

    def keys(self) -> list[str]:
        """The keys held now (a look that is not a use: no hit or miss counted)."""


class NoRamTier:
    """The default tier: keeps nothing (every model switch reads the local disk)."""

    def get(self, key: str) -> Mapping[str, Any] | None:
        return None

    def put(self, key: str, tensors: Mapping[str, Any], nbytes: int) -> bool:
        return False

    def keys(self) -> list[str]:
        return []


def _modules(pipe: Any) -> dict[str, Any]:
    return {name: getattr(pipe, name) for name in WEIGHT_COMPONENTS if getattr(pipe, name, None) is not None}


def architecture(pipe: Any) -> str:
    """Digest of the pipeline class and its weight components' configs: equal digests, equal tensor shapes."""
    parts: dict[str, Any] = {"pipeline": type(pipe).__name__}
    for name, module in _modules(pipe).items():
        config = getattr(module, "config", None)
        as_dict = config.to_dict() if hasattr(config, "to_dict") else dict(config or {})
        parts[name] = {k: v for k, v in as_dict.items() if not k.startswith("_") and k not in ("transformers_version",
                                                                                               "dtype", "torch_dtype")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


ALIGN = 64  # bytes: every tensor's view into the snapshot buffer starts on a cache line


def snapshot(pipe: Any, pin: bool) -> tuple[dict[str, Any], int]:
    """Copy the pipeline's weights to host memory (page-locked when ``pin``: the fast path back to the GPU).

    One buffer for the whole model, allocated once, with each tensor a view of it in its own layout
    (channels_last stays channels_last), filled by asynchronous device-to-host copies and one synchronise.
    Measured on an H100 (bench/gpu_bench.py, SDXL): the per-tensor ``.to("cpu").pin_memory()`` this replaces
    made a switch cost 11.1 s (two host copies and a page-locked allocation per tensor, ~2,500 of them).
    """
    import torch

    sources = [(f"{name}.{key}", value.detach()) for name, module in _modules(pipe).items()
               for key, value in module.state_dict().items()]
    layout, total = [], 0
    for key, value in sources:
        total = -(-total // ALIGN) * ALIGN
        nbytes = value.numel() * value.element_size()
        layout.append((key, value, total, nbytes))
        total += nbytes
    buffer = torch.empty(total, dtype=torch.uint8, pin_memory=pin)
    tensors: dict[str, Any] = {}
    with torch.no_grad():
        for key, value, start, nbytes in layout:
            flat = buffer[start:start + nbytes].view(value.dtype)
            host = flat.as_strided(value.shape, value.stride()) if _dense(value) else flat.view(value.shape)
            host.copy_(value, non_blocking=pin)
            tensors[key] = host
    if pin:
        torch.cuda.synchronize()
    return tensors, total


def _dense(value: Any) -> bool:
    """Contiguous in the default or channels_last layout: its strides fit a buffer of exactly its size."""
    import torch

    formats = {4: torch.channels_last, 5: torch.channels_last_3d}
    return value.is_contiguous() or (value.dim() in formats and value.is_contiguous(memory_format=formats[value.dim()]))


def restore_into(pipe: Any, tensors: Mapping[str, Any]) -> bool:
    """Copy ``tensors`` into the resident pipeline in place; False (nothing copied) when they do not fit it."""
    import torch

    targets: dict[str, Any] = {}
    for name, module in _modules(pipe).items():
        for key, value in module.state_dict().items():
            targets[f"{name}.{key}"] = value
    if set(targets) != set(tensors) or any(targets[k].shape != tensors[k].shape for k in targets):
        return False
    with torch.no_grad():
        for key, target in targets.items():
            target.copy_(tensors[key], non_blocking=True)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    return True
