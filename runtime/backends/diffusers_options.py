"""Options of the diffusers backend and its shape buckets, validated once with errors that name the key.

A shape bucket is a (width, height) the backend compiles for ahead of time (warm-up at boot) and keeps a
compiled graph of. Jobs at a bucket's size run the compiled UNet; any other size runs the eager UNet, so
an odd size never triggers a recompile (minutes on a GPU) in the middle of serving.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.backends.base import BackendError

# Training resolutions of each family (SDXL's aspect-ratio buckets; SD 1.x's 512-side ones).
SDXL_BUCKETS = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344))
SD_BUCKETS = ((512, 512), (512, 768), (768, 512))
DTYPES = ("auto", "float16", "bfloat16", "float32")
COMPILE = ("auto", "on", "off")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
COLD_COMPILE = ("skip", "compile")
DEVICES = ("cuda", "cpu")


class OptionsError(BackendError):
    """A diffusers backend option has a value it cannot take."""


def parse_bucket(text: str) -> tuple[int, int]:
    """'1024x1024' -> (1024, 1024); both sides multiples of 8 from 64 to 4096."""
    try:
        width, height = (int(part) for part in str(text).lower().split("x"))
    except ValueError as exc:
        raise OptionsError(f"diffusers.buckets: {text!r} is not WIDTHxHEIGHT (e.g. 1024x1024)") from exc
    if not all(64 <= side <= 4096 and side % 8 == 0 for side in (width, height)):
        raise OptionsError(f"diffusers.buckets: {text!r} needs both sides multiples of 8 from 64 to 4096")
    return width, height


@dataclass(frozen=True)
class DiffusersOptions:
    """How the backend loads and optimises pipelines (agent config ``diffusers`` block)."""

    device: str = "cuda"  # cpu: local mode and CPU-only hosts (torch without CUDA)
    dtype: str = "auto"  # auto: float16 on CUDA, float32 on CPU (CPUs have no fast half-precision convs)
    compile: str = "auto"  # auto: torch.compile on CUDA only (an Inductor CPU compile costs more than it saves)
    compile_mode: str = "max-autotune"  # Inductor autotuning + CUDA graphs: the fastest steady state on H100/H200
    channels_last: bool = True
    # With nothing cached for the key, a compile takes minutes per bucket (one SDXL bucket with max-autotune had
    # not finished after 480 s on an H100): longer than the launching lifecycle hook waits, so an instance would
    # be abandoned, and the next one would start cold again. "skip": serve the eager UNet until a store holds
    # this key's cache; "compile": pay it (the instance or build that fills the cache, the GPU benchmark).
    cold_compile: str = "skip"
    buckets: tuple[tuple[int, int], ...] = ()  # empty: the family's defaults (SDXL_BUCKETS / SD_BUCKETS)
    batch_sizes: tuple[int, ...] = (1,)  # batch sizes compiled at warm-up (each is its own graph)
    max_batch: int = 4  # the most jobs run_batch accepts at once
    compile_cache_dir: str = "/var/cache/genai-fleet/compile-cache"  # working Inductor/Triton caches
    compile_cache_stores: tuple[str, ...] = field(default=("/opt/genai-fleet/compile-cache",))  # restored from
    # Host-RAM model tier (runtime.model_cache.ram_tier): models switched away from stay in (pinned) host
    # memory up to this bound, so switching back is a host-to-GPU copy. None: 40% of the host's memory; 0: off.
    host_ram_gib: float | None = None
    # LoRAs with a compiled UNet (issue 40): the highest LoRA rank the compiled UNet's hotswap slot takes; jobs with
    # one LoRA up to it swap it in without a recompile. 0: no slot (LoRA jobs run on the eager UNet).
    lora_hotswap_rank: int = 0

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> DiffusersOptions:
        raw = dict(raw or {})
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise OptionsError(f"diffusers: unknown key(s) {', '.join(sorted(unknown))}; "
                               f"known: {', '.join(sorted(cls.__dataclass_fields__))}")
        for key, allowed in (("device", DEVICES), ("dtype", DTYPES), ("compile", COMPILE),
                             ("compile_mode", COMPILE_MODES), ("cold_compile", COLD_COMPILE)):
            if key in raw and raw[key] not in allowed:
                raise OptionsError(f"diffusers.{key}: {raw[key]!r} is not one of {', '.join(allowed)}")
        if "buckets" in raw:
            raw["buckets"] = tuple(parse_bucket(b) if isinstance(b, str) else tuple(b) for b in raw["buckets"])
        for key in ("batch_sizes", "compile_cache_stores"):
            if key in raw:
                raw[key] = tuple(raw[key])
        options = cls(**raw)
        if not 1 <= options.max_batch <= 64 or not all(1 <= b <= options.max_batch for b in options.batch_sizes):
            raise OptionsError(f"diffusers.max_batch ({options.max_batch}) must be 1-64 and every "
                               f"diffusers.batch_sizes entry {options.batch_sizes} from 1 to max_batch")
        if options.host_ram_gib is not None and not 0 <= options.host_ram_gib <= 4096:
            raise OptionsError(f"diffusers.host_ram_gib ({options.host_ram_gib}) must be from 0 (off) to 4096 GiB; "
                               "leave it out for 40% of the host's memory")
        if not 0 <= options.lora_hotswap_rank <= 1024:
            raise OptionsError(f"diffusers.lora_hotswap_rank ({options.lora_hotswap_rank}) must be from 0 (no "
                               "hotswap slot) to 1024")
        return options

    def host_ram_bytes(self) -> int:
        """The host-RAM tier's bound in bytes (0: no tier)."""
        if self.host_ram_gib is not None:
            return int(self.host_ram_gib * 2**30)
        return int(0.4 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))

    def buckets_for(self, family: str) -> tuple[tuple[int, int], ...]:
        if self.buckets:
            return self.buckets
        return SDXL_BUCKETS if family == "sdxl" else SD_BUCKETS

    def torch_dtype(self, device: str) -> Any:
        import torch

        name = self.dtype if self.dtype != "auto" else ("float16" if device.startswith("cuda") else "float32")
        return getattr(torch, name)

    def compiles(self, device: str) -> bool:
        return self.compile == "on" or (self.compile == "auto" and device.startswith("cuda"))
