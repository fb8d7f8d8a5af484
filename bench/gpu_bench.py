"""GPU benchmark of the diffusers backend on the SDXL architecture (random weights, the real shapes).

Prints a markdown table (and writes JSON with ``--out``) of: eager vs optimised latency per image
(1024x1024, 30 steps, classifier-free guidance), time from process start to the first image with a cold
and with a warm compile cache, images per second at batch 1, 2, 4 and 8 (``run_batch``), and the model
switch time host RAM -> GPU against local disk -> GPU. Everything goes through DiffusersBackend, the code
the worker runs. ``--tiny`` runs a tiny SDXL-shaped model on the CPU in well under a minute (the test suite
does); its figures say nothing about a GPU.

    .venv/bin/python bench/gpu_bench.py [--tiny] [--work /tmp/gpu-bench] [--out bench/results/gpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

START = time.monotonic()


def _backend(args: argparse.Namespace, compiled: bool, ram_gib: float = 0, **kwargs: Any) -> Any:
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions

    options = DiffusersOptions(
        compile="on" if compiled else "off", compile_mode=args.mode, buckets=((args.size, args.size),),
        batch_sizes=tuple(args.batches) if args.batch_compiled else (1,), max_batch=max(args.batches),
        compile_cache_dir=str(args.work / "compile-work"), compile_cache_stores=(str(args.work / "compile-store"),),
        host_ram_gib=ram_gib)
    return DiffusersBackend(device=args.device, options=options, **kwargs)


def _job(args: argparse.Namespace, job_id: str, seed: int = 0) -> Any:
    from runtime.backends.base import JobContext

    return JobContext(job_id, {"inputs": {"prompt": "a photo of a cat", "steps": args.steps, "width": args.size,
                                          "height": args.size, "guidance": 5.0, "seed": seed}})


def _sync(args: argparse.Namespace) -> None:
    if args.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _latency(args: argparse.Namespace, backend: Any, runs: int) -> float:
    backend.run(_job(args, "warm"))
    times = []
    for i in range(runs):
        _sync(args)
        started = time.perf_counter()
        backend.run(_job(args, f"lat{i}", seed=i))
        _sync(args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _throughput(args: argparse.Namespace, backend: Any) -> dict[int, float]:
    out = {}
    for batch in args.batches:
        jobs = [_job(args, f"b{batch}-{i}", seed=i) for i in range(batch)]
        backend.run_batch(jobs)  # first call of a batch size: warm-up (and its compile when compiled)
        times = []
        for run in range(args.runs):
            _sync(args)
            started = time.perf_counter()
            backend.run_batch([_job(args, f"B{batch}-{run}-{i}", seed=i) for i in range(batch)])
            _sync(args)
            times.append(time.perf_counter() - started)
        out[batch] = batch / statistics.median(times)
    return out


def _switch(args: argparse.Namespace, models: dict[str, Path], ram: bool) -> float:
    """Seconds to make model a resident again after b: through the agent's host-RAM tier
    (runtime.model_cache.ram_tier, pinned on CUDA) or, with ``ram`` false, from the local disk."""
    backend = _backend(args, compiled=False, ram_gib=64 if ram else 0)
    for model in ("a", "b"):
        backend.load_model(model, models[model])
        backend._ensure_resident()
    _sync(args)
    started = time.perf_counter()
    backend.load_model("a", models["a"])
    backend._ensure_resident()
    _sync(args)
    return time.perf_counter() - started


def _first_image(args: argparse.Namespace, models: dict[str, Path]) -> float:
    """A fresh process: start -> backend warm-up (compile, from the cache when warm) -> first image."""
    cmd = [sys.executable, __file__, "--child-first-image", "--work", str(args.work), "--device", args.device,
           "--size", str(args.size), "--steps", str(args.steps), "--mode", args.mode]
    if args.tiny:
        cmd.append("--tiny")
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"first-image child failed:\n{done.stderr[-3000:]}")
    return time.monotonic() - started


def _child_first_image(args: argparse.Namespace) -> None:
    backend = _backend(args, compiled=not args.tiny or args.compile_cpu)
    backend.warm_up("a", args.work / "model-a")
    backend.run(_job(args, "first"))
    print(json.dumps({"seconds_in_process": time.monotonic() - START}))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import torch

    from bench.diffusers_models import sdxl

    models = {}
    for name, seed in (("a", 0), ("b", 1)):
        folder = args.work / f"model-{name}"
        if not (folder / "model_index.json").is_file():
            sdxl(folder, tiny=args.tiny, seed=seed)
        models[name] = folder
    compiled = not args.tiny or args.compile_cpu
    eager = _latency(args, _loaded(args, models, compiled=False), args.runs)
    optimised = _latency(args, _loaded(args, models, compiled=compiled), args.runs)
    for folder in (args.work / "compile-work", args.work / "compile-store"):
        subprocess.run(["rm", "-rf", str(folder)], check=True)
    cold = _first_image(args, models)
    warm = _first_image(args, models)
    throughput = _throughput(args, _loaded(args, models, compiled=args.batch_compiled and compiled))
    return {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "diffusers": diffusers.__version__, "tiny": args.tiny,
        "size": args.size, "steps": args.steps, "compiled": compiled, "mode": args.mode,
        "eager_s": eager, "optimised_s": optimised, "first_image_cold_s": cold, "first_image_warm_s": warm,
        "images_per_s": {str(b): v for b, v in throughput.items()}, "batch_compiled": args.batch_compiled,
        "switch_ram_s": _switch(args, models, ram=True), "switch_disk_s": _switch(args, models, ram=False),
    }


def _loaded(args: argparse.Namespace, models: dict[str, Path], compiled: bool) -> Any:
    backend = _backend(args, compiled=compiled)
    backend.load_model("a", models["a"])
    return backend


def table(r: dict[str, Any]) -> str:
    what = f"{r['device']}, torch {r['torch']}, diffusers {r['diffusers']}, SDXL{' (tiny)' if r['tiny'] else ''}"
    rows = [f"Measured on {what}, {r['size']}x{r['size']}, {r['steps']} steps, CFG", "",
            "| measure | value |", "|---|---|",
            f"| eager latency per image | {r['eager_s']:.2f} s |",
            f"| optimised latency per image ({'compile ' + r['mode'] if r['compiled'] else 'not compiled'}) "
            f"| {r['optimised_s']:.2f} s |",
            f"| process start to first image, cold compile cache | {r['first_image_cold_s']:.1f} s |",
            f"| process start to first image, warm compile cache | {r['first_image_warm_s']:.1f} s |"]
    kind = "compiled" if r["batch_compiled"] else "eager"
    rows += [f"| images/s at batch {b} ({kind}) | {v:.3f} |" for b, v in r["images_per_s"].items()]
    rows += [f"| model switch host RAM -> device | {r['switch_ram_s']:.3f} s |",
             f"| model switch local disk -> device | {r['switch_disk_s']:.3f} s |"]
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny SDXL-shaped model on the CPU (smoke run)")
    parser.add_argument("--device", default=None, help="cuda (default when available) or cpu")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "genai-gpu-bench")
    parser.add_argument("--size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--batches", type=lambda s: [int(x) for x in s.split(",")], default=None)
    parser.add_argument("--mode", default="max-autotune", help="torch.compile mode")
    parser.add_argument("--batch-compiled", action="store_true", help="measure batches with the compiled UNet")
    parser.add_argument("--compile-cpu", action="store_true", help="with --tiny: compile on the CPU as well")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child-first-image", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    args.size = args.size or (64 if args.tiny else 1024)
    args.steps = args.steps or (2 if args.tiny else 30)
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 2, 4, 8])
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child_first_image:
        _child_first_image(args)
        return 0
    result = measure(args)
    print(table(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
