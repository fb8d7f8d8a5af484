"""GPU check of the host-RAM tier: a model switch from runtime.model_cache.HostRamTier (pinned) against a
pageable host copy and a disk load of the same tensors, onto the GPU.

Issue 18 quotes an H200: 5.3 GB in 0.11 s from pinned memory, 0.94 s pageable. This measures the same
through the worker's own tier: a state dict of ``--gb`` GB of fp16 tensors, written with safetensors to
local disk; each round times (best of ``--rounds``, the GPU synchronised before the clock stops):
the RAM-tier switch (``get_or_load`` hit, then ``.to("cuda", non_blocking=True)`` per tensor), the same
tensors from pageable host memory, and a disk load (``safetensors.torch.load_file`` then to the GPU)
with the file dropped from the page cache (``posix_fadvise(DONTNEED)``) and with it cached.
Needs torch with CUDA and safetensors; it is not a ``bench_*`` script, so ``make bench`` skips it.

    python bench/gpu_ram_tier.py [--gb 5.3] [--rounds 3] [--work /tmp/ram-tier] [--out result.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from runtime.model_cache import HostRamTier


def _drop_page_cache(path: Path) -> None:
    with path.open("rb") as fh:
        os.fsync(fh.fileno())
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _to_gpu(tensors: dict, torch) -> float:
    t = time.perf_counter()
    out = {k: v.to("cuda", non_blocking=True) for k, v in tensors.items()}
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t
    del out
    return seconds


def measure(gb: float, rounds: int, work: Path) -> dict:
    import torch
    from safetensors.torch import load_file, save_file

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    n_tensors = 16
    per = int(gb * 1e9) // 2 // n_tensors  # fp16 elements per tensor
    weights = {f"layer{i}.weight": torch.randn(per, dtype=torch.float16) for i in range(n_tensors)}
    nbytes = sum(v.numel() * v.element_size() for v in weights.values())
    path = work / "model.safetensors"
    save_file(weights, str(path))
    tier = HostRamTier(nbytes + (1 << 20))
    _, hit = tier.get_or_load("model", lambda: {k: v.clone() for k, v in weights.items()}, nbytes=nbytes)
    assert not hit
    _to_gpu(weights, torch)  # warm the CUDA context and allocator
    ram, pageable, disk_cold, disk_warm = [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        value, hit = tier.get_or_load("model", lambda: None)
        assert hit
        ram.append(time.perf_counter() - t + _to_gpu(value, torch))
        pageable.append(_to_gpu(weights, torch))
        for times, cold in ((disk_cold, True), (disk_warm, False)):
            if cold:
                _drop_page_cache(path)
            t = time.perf_counter()
            loaded = load_file(str(path), device="cpu")
            times.append(time.perf_counter() - t + _to_gpu(loaded, torch))
            del loaded
    pinned = all(v.is_pinned() for v in tier.get("model").values())
    return {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "bytes": nbytes,
            "ram_tier_pinned": pinned,
            "ram_tier_switch_s": round(min(ram), 4), "pageable_host_copy_s": round(min(pageable), 4),
            "disk_load_page_cache_dropped_s": round(min(disk_cold), 4),
            "disk_load_page_cache_warm_s": round(min(disk_warm), 4),
            "ram_tier_gb_per_s": round(nbytes / 1e9 / min(ram), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gb", type=float, default=5.3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        result = measure(args.gb, args.rounds, Path(tmp))
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
