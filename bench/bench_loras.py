"""LoRA switches on a resident base against loading the base again (issue 40), in the same run, on the CPU with
the tiny SD pipeline (bench.diffusers_models) and tiny LoRAs made for it (bench.diffusers_loras).

Measured, each the median of ``--rounds``:
1. base reload: the base pipeline loaded from its folder again (runtime.backends.diffusers_loading.load: what a
   worker without LoRAs would do to change the adapted weights: load another checkpoint);
2. LoRA swap to a LoRA new to the pipeline: its file read (or its tensors from the host-RAM tier) and loaded as
   an adapter, then activated (``Adapters.apply``);
3. LoRA swap between adapters already loaded: ``set_adapters`` only.
Goal: a swap costs under a tenth of a base reload, and the base is never reloaded while LoRAs switch (the backend's
disk-load count is printed). Figures are printed, never asserted; the tiny model makes both sides small, so the
ratio, not the seconds, is the figure (on an SDXL base a reload is seconds and a LoRA swap tens of milliseconds).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def measure(rounds: int, loras: int) -> dict:
    from bench.diffusers_loras import tiny_lora
    from bench.diffusers_models import tiny_sd
    from runtime.backends import diffusers_loading as loading
    from runtime.backends.base import ExtraModel
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions
    from runtime.model_cache.ram_tier import HostRamTier

    options = DiffusersOptions(device="cpu", compile="off", buckets=((64, 64),), host_ram_gib=0)
    with tempfile.TemporaryDirectory(prefix="bench-loras-") as scratch:
        root = Path(scratch)
        base = tiny_sd(root / "base@v1")
        files = {f"sd15/l{i}": ExtraModel(tiny_lora(base, root / f"l{i}@v1", seed=i), "lora") for i in range(loras)}
        reload_s = []
        for _ in range(rounds):
            started = time.perf_counter()
            loading.load(base, options, "cpu")
            reload_s.append(time.perf_counter() - started)
        backend = DiffusersBackend(device="cpu", options=options, ram_tier=HostRamTier(256 * 2**20))
        backend.load_model("sd15/base", base)
        pipe = backend._ensure_resident().pipe
        new_s, loaded_s = [], []
        ids = list(files)
        for r in range(rounds):
            backend.adapters.unload(pipe)  # every LoRA new again (its tensors stay in the host-RAM tier after round 0)
            for model_id in ids:
                started = time.perf_counter()
                backend.adapters.apply(pipe, ((model_id, 0.8),), files)
                new_s.append(time.perf_counter() - started)
            for model_id in ids:
                started = time.perf_counter()
                backend.adapters.apply(pipe, ((model_id, 0.5 + 0.1 * r),), files)
                loaded_s.append(time.perf_counter() - started)
        reload_med = statistics.median(reload_s)
        new_med, loaded_med = statistics.median(new_s), statistics.median(loaded_s)
        return {"figures": [
            {"metric": "base reload s", "value": round(reload_med, 4), "unit": "s"},
            {"metric": "LoRA swap, adapter new to the pipeline s", "value": round(new_med, 4), "unit": "s",
             "baseline_metric": "base reload s", "baseline_value": round(reload_med, 4)},
            {"metric": "LoRA swap, adapter loaded s", "value": round(loaded_med, 4), "unit": "s",
             "baseline_metric": "base reload s", "baseline_value": round(reload_med, 4)},
            {"metric": "new-adapter swap / base reload ratio", "value": round(new_med / reload_med, 4), "unit": "x"},
            {"metric": "base loads from disk during the swaps", "value": backend.loads["disk"] - 1, "unit": ""},
            {"metric": "LoRA tensors from the host-RAM tier", "value": backend.adapters.loads["ram"], "unit": ""},
        ]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--loras", type=int, default=3)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    result = measure(args.rounds, args.loras)
    for figure in result["figures"]:
        print(f"{figure['metric']}: {figure['value']}")
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
