"""GPU benchmark of the diffusers backend on the SDXL architecture (random weights, the real shapes).

Prints a markdown table (and writes JSON with ``--out``) of: eager vs optimised latency per image
(1024x1024, 30 steps, classifier-free guidance), time from process start to the first image with a cold
and with a warm compile cache, images per second at batch 1, 2, 4 and 8 (``run_batch``), and the model
switch time host RAM -> GPU against local disk -> GPU; and a video phase (issue 36): frames per second of
txt2video generation on AnimateDiff (SD 1.5 + its motion adapter, random weights, the real shapes; 512x512,
16 frames, ``--video-steps`` steps, CFG), a clip's time from prompt to encoded MP4 and the GPU's peak memory.
Everything goes through DiffusersBackend, the code the worker runs. ``--tiny`` runs tiny SDXL- and
AnimateDiff-shaped models on the CPU in about a minute (the test suite does); its figures say nothing about a GPU.

The compile is paid once: the cold first image (a fresh process, empty caches) fills the compile cache; the
warm one (a fresh process with only the stored archive, as on a new instance) then measures the optimised
latency itself. Eager, batch, switch and video figures come first, and the JSON is rewritten after every phase, so a
run cut short by a time limit still leaves what it measured.

    .venv/bin/python bench/gpu_bench.py [--tiny] [--work /tmp/gpu-bench] [--out bench/results/gpu.json]
    .venv/bin/python bench/gpu_bench.py --phases video [--tiny]   # the video phase alone
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

START = time.monotonic()
PHASES = ("eager", "batch", "switch", "video", "cold", "warm")
VIDEO_FRAMES, VIDEO_FPS = 16, 8


def _backend(args: argparse.Namespace, compiled: bool, ram_gib: float = 0, **kwargs: Any) -> Any:
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions

    options = DiffusersOptions(
        compile="on" if compiled else "off", compile_mode=args.mode, buckets=((args.size, args.size),),
        batch_sizes=tuple(args.batches) if args.batch_compiled else (1,), max_batch=max(args.batches),
        compile_cache_dir=str(args.work / "compile-work"), compile_cache_stores=(str(args.work / "compile-store"),),
        host_ram_gib=ram_gib, cold_compile="compile")  # the benchmark measures the cold compile itself
    return DiffusersBackend(device=args.device, options=options, **kwargs)


def _job(args: argparse.Namespace, job_id: str, seed: int = 0) -> Any:
    from runtime.backends.base import JobContext
    from runtime.jobs.schema import JobSpec

    return JobContext(job_id, JobSpec.parse({"model": "bench", "inputs": {
        "prompt": "a photo of a cat", "steps": args.steps, "width": args.size, "height": args.size, "guidance": 5.0,
        "seed": seed}}))


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


def _switch(args: argparse.Namespace, models: dict[str, Path], ram: bool) -> tuple[float, float]:
    """Seconds to make a model resident again after another: through the agent's host-RAM tier
    (runtime.model_cache.ram_tier, pinned on CUDA) or, with ``ram`` false, from the local disk. Two figures:
    the first switch back (the outgoing model, loaded from disk, is copied into the tier on the way) and a
    later one (both models already in the tier: only the incoming copy)."""
    backend = _backend(args, compiled=False, ram_gib=64 if ram else 0)
    times = []
    for step, model in enumerate(("a", "b", "a", "b")):
        _sync(args)
        started = time.perf_counter()
        backend.load_model(model, models[model])
        backend._ensure_resident()
        _sync(args)
        if step >= 2:
            times.append(time.perf_counter() - started)
    backend.close()
    _empty_cache(args.device)
    return times[0], times[1]


def _video_job(args: argparse.Namespace, job_id: str, seed: int) -> Any:
    from runtime.backends.base import JobContext
    from runtime.jobs.schema import JobSpec

    return JobContext(job_id, JobSpec.parse({"model": "video", "task": "txt2video", "inputs": {
        "prompt": "a wave rolling onto a beach", "steps": args.video_steps, "width": args.video_size,
        "height": args.video_size, "frames": VIDEO_FRAMES, "fps": VIDEO_FPS, "guidance": 7.5, "seed": seed}}))


def _video(args: argparse.Namespace, model: Path) -> dict[str, float]:
    """txt2video through the backend (eager: the motion UNet is not compiled): the median of ``--runs`` clips
    after a warm-up one. Frames per second counts the whole job: denoising, the chunked VAE decode and the
    H.264 encode (each clip's MP4 is checked to hold the frames asked for)."""
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions

    options = DiffusersOptions(compile="off", buckets=((args.video_size, args.video_size),))
    backend = DiffusersBackend(device=args.device, options=options)
    try:
        backend.load_model("video", model)
        backend.run(_video_job(args, "video-warm", 0))
        if args.device.startswith("cuda"):
            import torch

            torch.cuda.reset_peak_memory_stats()
        times = []
        for i in range(args.runs):
            _sync(args)
            started = time.perf_counter()
            result = backend.run(_video_job(args, f"video{i}", i + 1))
            _sync(args)
            times.append(time.perf_counter() - started)
            if result.outputs[0].video["frames"] != VIDEO_FRAMES:
                raise SystemExit(f"video phase: the clip holds {result.outputs[0].video['frames']} frames")
        out = {"video_clip_s": statistics.median(times), "video_frames_per_s": VIDEO_FRAMES / statistics.median(times)}
        if args.device.startswith("cuda"):
            import torch

            out["video_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
        return out
    finally:
        backend.close()
        _empty_cache(args.device)


def _first_image(args: argparse.Namespace) -> tuple[float, float, bool]:
    """A fresh process: start -> backend warm-up (compile, from the cache when warm) -> first image; then the
    process's median latency of ``--runs`` more images (the optimised latency, compiled UNet)."""
    cmd = [sys.executable, __file__, "--child-first-image", "--work", str(args.work), "--device", args.device,
           "--size", str(args.size), "--steps", str(args.steps), "--mode", args.mode, "--runs", str(args.runs)]
    cmd += ["--tiny"] if args.tiny else []
    cmd += ["--compile-cpu"] if args.compile_cpu else []
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"first-image child failed:\n{done.stderr[-3000:]}")
    child = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"first-image child: {child}", flush=True)
    return time.monotonic() - started - child["seconds_after_first"], child["latency_s"], child["cache_was_warm"]


def _child_first_image(args: argparse.Namespace) -> None:
    backend = _backend(args, compiled=not args.tiny or args.compile_cpu)
    warm = backend.warm_up("a", args.work / "model-a")
    backend.run(_job(args, "first"))
    _sync(args)
    first_done = time.monotonic()
    latency = _latency(args, backend, args.runs)
    print(json.dumps({"seconds_in_process": first_done - START, "latency_s": latency,
                      "seconds_after_first": time.monotonic() - first_done,
                      "cache_was_warm": warm["cache_was_warm"], "warm_up_s": warm["seconds"]}))


def measure(args: argparse.Namespace) -> dict[str, Any]:
    import diffusers
    import torch

    from bench.diffusers_models import sdxl

    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu",
        "torch": torch.__version__, "diffusers": diffusers.__version__, "tiny": args.tiny, "size": args.size,
        "steps": args.steps, "compiled": not args.tiny or args.compile_cpu, "mode": args.mode,
        "batch_compiled": args.batch_compiled}
    models = {"a": args.work / "model-a", "b": args.work / "model-b"}
    if not (models["a"] / "model_index.json").is_file():
        sdxl(models["a"], tiny=args.tiny, seed=0)
    if not (models["b"] / "model_index.json").is_file():  # same weights, another model id: links, not 7 GB more
        shutil.copytree(models["a"], models["b"], copy_function=os.link)
    _phase(args, result, "built models")
    if "eager" in args.phases or ("batch" in args.phases and not args.batch_compiled):
        with _freed(_loaded(args, models, compiled=False)) as eager:
            if "eager" in args.phases:
                result["eager_s"] = _latency(args, eager, args.runs)
                _phase(args, result, "eager latency")
            if "batch" in args.phases and not args.batch_compiled:
                result["images_per_s"] = {str(b): v for b, v in _throughput(args, eager).items()}
                _phase(args, result, "batches (eager)")
    if "batch" in args.phases and args.batch_compiled:
        with _freed(_loaded(args, models, compiled=result["compiled"])) as compiled:
            result["images_per_s"] = {str(b): v for b, v in _throughput(args, compiled).items()}
        _phase(args, result, "batches (compiled)")
    if "switch" in args.phases:
        result["switch_ram_first_s"], result["switch_ram_s"] = _switch(args, models, ram=True)
        result["switch_disk_s"], _ = _switch(args, models, ram=False)
        _phase(args, result, "switches")
    if "video" in args.phases:
        _video_phase(args, result)
    if "cold" in args.phases:
        for folder in (args.work / "compile-work", args.work / "compile-store"):
            shutil.rmtree(folder, ignore_errors=True)
        result["first_image_cold_s"], _, result["cold_cache_was_warm"] = _first_image(args)
        _phase(args, result, "first image, cold cache")
    if "warm" in args.phases:
        shutil.rmtree(args.work / "compile-work", ignore_errors=True)  # a new instance: only the stored archive
        result["first_image_warm_s"], result["optimised_s"], result["warm_cache_was_warm"] = _first_image(args)
        _phase(args, result, "first image, warm cache + optimised latency")
    return result


def _video_phase(args: argparse.Namespace, result: dict[str, Any]) -> None:
    from bench.diffusers_video_models import animatediff

    video_model = args.work / "video-model"
    if not (video_model / "model_index.json").is_file():
        animatediff(video_model, tiny=args.tiny, seed=0)
    result.update(_video(args, video_model), video_size=args.video_size, video_steps=args.video_steps,
                  video_frames=VIDEO_FRAMES)
    _phase(args, result, "video")


@contextlib.contextmanager
def _freed(backend: Any) -> Iterator[Any]:
    """Frees the backend's device memory after a phase (the children need the GPU to themselves)."""
    try:
        yield backend
    finally:
        backend.close()
        _empty_cache(backend.device)


def _empty_cache(device: str) -> None:
    if device.startswith("cuda"):
        import gc

        import torch

        gc.collect()
        torch.cuda.empty_cache()


def _phase(args: argparse.Namespace, result: dict[str, Any], name: str) -> None:
    print(f"[{time.monotonic() - START:7.1f} s] {name}: "
          f"{ {k: v for k, v in result.items() if isinstance(v, (float, dict))} }", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


def _loaded(args: argparse.Namespace, models: dict[str, Path], compiled: bool) -> Any:
    backend = _backend(args, compiled=compiled)
    backend.load_model("a", models["a"])
    return backend


def table(r: dict[str, Any]) -> str:
    """The README table; rows of phases that were not run (``--phases``) are left out."""
    what = f"{r['device']}, torch {r['torch']}, diffusers {r['diffusers']}, SDXL{' (tiny)' if r['tiny'] else ''}"
    compiled = f"compile {r['mode']}" if r["compiled"] else "not compiled"
    kind = "compiled" if r["batch_compiled"] else "eager"
    rows = [("eager_s", "eager latency per image", "{:.2f} s"),
            ("optimised_s", f"optimised latency per image ({compiled})", "{:.2f} s"),
            ("first_image_cold_s", "process start to first image, cold compile cache", "{:.1f} s"),
            ("first_image_warm_s", "process start to first image, warm compile cache", "{:.1f} s")]
    lines = [f"Measured on {what}, {r['size']}x{r['size']}, {r['steps']} steps, CFG", "", "| measure | value |",
             "|---|---|"]
    lines += [f"| {label} | {fmt.format(r[key])} |" for key, label, fmt in rows if key in r]
    lines += [f"| images/s at batch {b} ({kind}) | {v:.3f} |" for b, v in r.get("images_per_s", {}).items()]
    lines += [f"| {label} | {r[key]:.3f} s |" for key, label in (
        ("switch_ram_s", "model switch host RAM -> device"),
        ("switch_ram_first_s", "first switch back (outgoing model copied to host RAM on the way)"),
        ("switch_disk_s", "model switch local disk -> device"))
        if key in r]
    if "video_frames_per_s" in r:
        clip = f"AnimateDiff{' (tiny)' if r['tiny'] else ''}, {r['video_size']}x{r['video_size']}, " \
               f"{r['video_frames']} frames, {r['video_steps']} steps, CFG"
        lines += [f"| video: frames/s of txt2video generation ({clip}) | {r['video_frames_per_s']:.2f} |",
                  f"| video: one clip, prompt to encoded MP4 | {r['video_clip_s']:.2f} s |"]
        if "video_peak_gib" in r:
            lines += [f"| video: peak GPU memory | {r['video_peak_gib']:.1f} GiB |"]
    return "\n".join(lines)


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
    parser.add_argument("--phases", type=lambda s: set(s.split(",")), default=set(PHASES),
                        help=f"comma-separated subset of {','.join(PHASES)} (to split a run across time limits)")
    parser.add_argument("--video-size", type=int, default=None, help="video phase: width and height (512)")
    parser.add_argument("--video-steps", type=int, default=None, help="video phase: denoising steps (25)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child-first-image", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.phases <= set(PHASES):
        parser.error(f"--phases: {','.join(sorted(args.phases - set(PHASES)))} unknown; choose from {','.join(PHASES)}")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.tiny else "cpu"
    args.size = args.size or (64 if args.tiny else 1024)
    args.steps = args.steps or (2 if args.tiny else 30)
    args.batches = args.batches or ([1, 2] if args.tiny else [1, 2, 4, 8])
    args.video_size = args.video_size or (64 if args.tiny else 512)
    args.video_steps = args.video_steps or (2 if args.tiny else 25)
    args.work.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.child_first_image:
        _child_first_image(args)
        return 0
    print(table(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
