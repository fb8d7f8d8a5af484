"""LoRAs on the resident diffusers pipeline (issue 40): loaded onto the base without reloading it, switched per
call, unloaded before the base changes.

Each LoRA is a peft adapter named after its store id. A call with LoRAs loads those not on the pipeline yet
(``load_lora_weights`` from a state dict: the weights come from the host-RAM tier under ``<id>@lora`` when it
holds them, else from the file the agent fetched, ``JobContext.extra_models``, and are put in the tier), then
activates exactly the call's set with its weights (``set_adapters``); a call without LoRAs disables them
(``disable_lora``). Up to ``keep`` adapters stay loaded (least recently used go first), so switching between
recent LoRAs is a ``set_adapters`` call. Before the base model changes (a disk load or a switch through the
RAM tier) every adapter is unloaded (``unload_lora_weights``): the base's modules are restored, so its
weights, and a snapshot of them, are the model's own.

With a compiled UNet (``DiffusersOptions.lora_hotswap_rank`` > 0) the UNet gets one adapter slot before it is
compiled (``enable_lora_hotswap`` and a zero LoRA); a call with one LoRA swaps that LoRA's weights into the slot
(``hotswap=True``), which compiles nothing; a call without one swaps the zero LoRA back (the slot's weights
are zero, so the images are the base's). A call with more LoRAs than the slot runs on the eager UNet.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runtime.backends.base import ExtraModel, JobInputError
from runtime.backends.diffusers_ram import HostRamTier

log = logging.getLogger(__name__)
LoraSet = tuple[tuple[str, float], ...]  # (store id, weight) per LoRA, sorted: equal sets are equal keys
LORA_KIND = "lora"
SLOT = "hotswap"  # the compiled UNet's one adapter


def lora_set(loras: Sequence[Any]) -> LoraSet:
    """The typed ``inputs.loras`` as a sorted (id, weight) tuple: the batch key's part and the call's set."""
    return tuple(sorted((lora.model, float(lora.weight)) for lora in loras))


def adapter_name(model_id: str) -> str:
    """A peft adapter name for a store id (no '.' or '/': peft uses names as module keys)."""
    return "lora_" + re.sub(r"[^A-Za-z0-9_]", "_", model_id)


def weights_file(extra: ExtraModel) -> Path:
    """The LoRA's weights file: the cache entry's single file, or the one .safetensors in its folder."""
    if extra.path.is_file():
        return extra.path
    files = sorted(extra.path.rglob("*.safetensors"))
    if len(files) != 1:
        raise JobInputError(f"LoRA folder {extra.path.name} holds {len(files)} .safetensors files; upload one")
    return files[0]


class Adapters:
    """The LoRAs loaded on one resident pipeline (module docstring)."""

    def __init__(self, ram: HostRamTier, keep: int = 8) -> None:
        self._ram, self.keep = ram, keep
        self.loaded: OrderedDict[str, str] = OrderedDict()  # store id -> adapter name, least recent first
        self.active: LoraSet = ()
        self.loads = {"disk": 0, "ram": 0}  # LoRA weights read from the file / taken from the host-RAM tier
        self.hotswap_rank = 0  # > 0: the compiled UNet's slot exists (prepare_hotswap)
        self.slot: str | None = None  # the store id whose weights are in the slot (None: the zero LoRA)
        self._zero: dict[str, Any] | None = None

    # -- eager: adapters per LoRA ------------------------------------------------------------------------
    def apply(self, pipe: Any, loras: LoraSet, files: Mapping[str, ExtraModel]) -> None:
        """Make exactly ``loras`` active on ``pipe`` (loading those not loaded yet)."""
        if loras == self.active:
            return
        if not loras:
            pipe.disable_lora()
            self.active = ()
            return
        for model_id, _ in loras:
            if model_id not in self.loaded:
                self._load(pipe, model_id, files)
            self.loaded.move_to_end(model_id)
        pipe.set_adapters([self.loaded[m] for m, _ in loras], adapter_weights=[w for _, w in loras])
        pipe.enable_lora()
        self.active = loras
        self._evict(pipe, {m for m, _ in loras})

    def unload(self, pipe: Any) -> None:
        """Remove every adapter (the base's own modules back): before the base model changes."""
        if self.loaded or self.hotswap_rank:
            pipe.unload_lora_weights()
        self.loaded.clear()
        self.active, self.slot, self.hotswap_rank = (), None, 0

    def _load(self, pipe: Any, model_id: str, files: Mapping[str, ExtraModel]) -> None:
        state = self.state_dict(model_id, files)
        name = adapter_name(model_id)
        try:
            pipe.load_lora_weights(dict(state), adapter_name=name)
        except (ValueError, KeyError, RuntimeError) as exc:  # not a LoRA of this architecture
            raise JobInputError(f"LoRA {model_id} does not fit model {getattr(pipe, '_genai_model', 'loaded')}: "
                                f"{str(exc)[:300]}") from exc
        self.loaded[model_id] = name

    def _evict(self, pipe: Any, needed: set[str]) -> None:
        while len(self.loaded) > self.keep:
            old = next((m for m in self.loaded if m not in needed), None)
            if old is None:
                return
            pipe.delete_adapters(self.loaded.pop(old))

    def state_dict(self, model_id: str, files: Mapping[str, ExtraModel]) -> Mapping[str, Any]:
        """The LoRA's tensors: from the host-RAM tier, else read from its file (and kept in the tier)."""
        key = f"{model_id}@{LORA_KIND}"
        held = self._ram.get(key)
        if held is not None:
            self.loads["ram"] += 1
            return held
        extra = files.get(model_id)
        if extra is None:
            raise JobInputError(f"LoRA {model_id} has no local file on this worker (the agent fetches LoRAs through "
                                "its model cache: the agent config needs model_cache.store_bucket)")
        if extra.kind != LORA_KIND:
            raise JobInputError(f"inputs.loras: {model_id} is a {extra.kind} in the model store, not a LoRA")
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights_file(extra)))
        except (OSError, ValueError, RuntimeError) as exc:  # safetensors' header errors are RuntimeErrors
            raise JobInputError(f"LoRA {model_id}: {weights_file(extra).name} is not safetensors: {exc}") from exc
        self.loads["disk"] += 1
        self._ram.put(key, state, sum(t.numel() * t.element_size() for t in state.values()))
        return state

    # -- compiled: one hotswap slot ----------------------------------------------------------------------
    def prepare_hotswap(self, pipe: Any, rank: int, template: Mapping[str, Any] | None = None) -> None:
        """Before the UNet is compiled: make room for rank-``rank`` LoRAs and load the zero LoRA into the slot.
        ``template`` is a LoRA state dict whose keys name the modules LoRAs adapt (its tensors are zeroed)."""
        import torch

        pipe.enable_lora_hotswap(target_rank=rank)
        self._zero = {k: torch.zeros_like(v) for k, v in (template or {}).items()}
        if not self._zero:
            raise JobInputError("diffusers.lora_hotswap_rank needs a LoRA to take the adapted modules from")
        pipe.load_lora_weights(dict(self._zero), adapter_name=SLOT)
        self.hotswap_rank, self.slot = rank, None

    def swap(self, pipe: Any, loras: LoraSet, files: Mapping[str, ExtraModel]) -> None:
        """Put the call's one LoRA (or the zero LoRA) into the compiled UNet's slot, at its weight."""
        model_id, weight = loras[0] if loras else (None, 1.0)
        if model_id != self.slot:
            state = self._zero if model_id is None else self.state_dict(model_id, files)
            try:
                pipe.load_lora_weights(dict(state or {}), adapter_name=SLOT, hotswap=True)
            except (ValueError, KeyError, RuntimeError) as exc:
                raise JobInputError(f"LoRA {model_id} cannot be swapped into the compiled UNet's slot "
                                    f"(rank above diffusers.lora_hotswap_rank {self.hotswap_rank}, or other "
                                    f"modules): {str(exc)[:300]}") from exc
            self.slot = model_id
        pipe.set_adapters([SLOT], adapter_weights=[weight])
        self.active = loras
