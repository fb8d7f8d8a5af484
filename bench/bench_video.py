"""Video encoding (issue 36): encode throughput and the memory a 240-frame job adds, each beside the same run's
time and memory to render the same frames without encoding.

1. Throughput at 512x512 and 1024x576 (``--frames`` frames, 240 by default, H.264 MP4 as jobs get it): the
   test pattern's frames (runtime/backends/test_pattern_video.py) rendered alone, then rendered and streamed
   through the encoder (runtime/video/encode.py); encode frames/s = frames / (render+encode - render), and
   the multiple of real time at 24 fps. Goal on the 2-core machine: >= 10x real time at 512x512.
2. Memory of a 240-frame 1024x576 job: three fresh processes each report the peak RSS their run adds over the
   RSS before it (imports done, Linux's peak reset through /proc/self/clear_refs): render only (the baseline),
   render streamed into the encoder (what a job does), and render all frames into a list first, then encode
   (what holding every decoded frame costs). Goal: the job adds <= 2 GB.
3. Encoder CPU cost: the CPU seconds (every thread of the process: x264's and swscale's included) that encoding
   adds to rendering, as frames per CPU-second. Wall-clock throughput on a shared machine depends on what else
   runs; the CPU cost does not, so it is the figure to compare across runs (on an idle machine the wall figure
   is at least this, since x264 encodes on several threads). The load average is recorded with the figures.
4. ``--baseline-encoder FILE``: another version of runtime/video/encode.py (e.g. ``git show REV:runtime/video/
   encode.py > /tmp/old.py``) encodes the same pre-rendered frames in alternating rounds with this one, and
   the ratio is reported: before/after in one run, under the same load.
Figures are printed, never asserted; the best of ``--rounds`` is kept for throughput (the machine is shared).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from runtime.backends import test_pattern_video as pattern
from runtime.video.encode import encode_video

ROOT = Path(__file__).resolve().parent.parent

SIZES = ((512, 512), (1024, 576))
FPS = 24


def _frames(width: int, height: int, count: int):
    return pattern.frames(pattern.background("bench", 1, width, height), count, 1)


def _render_only(width: int, height: int, count: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to render ``count`` frames."""
    started, cpu = time.perf_counter(), time.process_time()
    for _ in _frames(width, height, count):
        pass
    return time.perf_counter() - started, time.process_time() - cpu


def _render_and_encode(width: int, height: int, count: int) -> tuple[float, float]:
    started, cpu = time.perf_counter(), time.process_time()
    encode_video(_frames(width, height, count), width=width, height=height, fps=FPS, expected_frames=count)
    return time.perf_counter() - started, time.process_time() - cpu


def _load_encoder(path: Path):
    spec = importlib.util.spec_from_file_location("baseline_encode", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.encode_video


def _versus(baseline: Path, width: int, height: int, count: int, rounds: int) -> list[dict]:
    """This encoder and ``baseline``'s on the same pre-rendered frames, alternating, best round of each."""
    frames = list(_frames(width, height, count))
    encoders = {"this": encode_video, "baseline": _load_encoder(baseline)}
    best = {name: float("inf") for name in encoders}
    cpu = {name: float("inf") for name in encoders}
    for r in range(max(2, rounds) * 2):
        for name in (("this", "baseline") if r % 2 else ("baseline", "this")):
            started, cpu_started = time.perf_counter(), time.process_time()
            encoders[name](iter(frames), width=width, height=height, fps=FPS, expected_frames=count)
            best[name] = min(best[name], time.perf_counter() - started)
            cpu[name] = min(cpu[name], time.process_time() - cpu_started)
    size = f"{width}x{height}"
    return [{"metric": f"encode {size} frames/s, this encoder (pre-rendered frames)",
             "value": round(count / best["this"], 1), "unit": "1/s",
             "baseline_metric": f"encoder of {baseline.name}", "baseline_value": round(count / best["baseline"], 1),
             "ratio": round(best["baseline"] / best["this"], 2)},
            {"metric": f"encode {size} frames per CPU-second, this encoder (pre-rendered frames)",
             "value": round(count / max(1e-6, cpu["this"]), 1), "unit": "1/s",
             "baseline_metric": f"encoder of {baseline.name}",
             "baseline_value": round(count / max(1e-6, cpu["baseline"]), 1),
             "ratio": round(cpu["baseline"] / max(1e-6, cpu["this"]), 2)}]


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(mode: str, width: int, height: int, count: int) -> None:
    """One measured process: prints the peak RSS the run added (MiB) over the process's RSS before it, imports
    (PyAV included) done and the peak reset (``/proc/self/clear_refs`` 5)."""
    import av  # noqa: F401 - loaded before the measurement in every mode

    Path("/proc/self/clear_refs").write_text("5")
    before = _status_mib("VmRSS")
    if mode == "render":
        _render_only(width, height, count)
    elif mode == "stream":
        _render_and_encode(width, height, count)
    else:  # every frame held, then encoded
        frames = list(_frames(width, height, count))
        encode_video(iter(frames), width=width, height=height, fps=FPS, expected_frames=count)
    print(_status_mib("VmHWM") - before)


def _peak_mib(mode: str, width: int, height: int, count: int) -> float:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(width), str(height), str(count)],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--frames", type=int, default=240)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", nargs=4, metavar=("MODE", "W", "H", "N"))
    parser.add_argument("--baseline-encoder", type=Path, help="another runtime/video/encode.py to compare with")
    args = parser.parse_args(argv)
    if args.child:
        mode, w, h, n = args.child
        child(mode, int(w), int(h), int(n))
        return 0
    figures = []
    load_before = os.getloadavg()[0]
    for width, height in SIZES:
        renders = [_render_only(width, height, args.frames) for _ in range(args.rounds)]
        totals = [_render_and_encode(width, height, args.frames) for _ in range(args.rounds)]
        render, total = min(w for w, _ in renders), min(w for w, _ in totals)
        encode = max(1e-6, total - render)
        encode_cpu = max(1e-6, min(c for _, c in totals) - min(c for _, c in renders))
        size = f"{width}x{height}"
        figures.append({"metric": f"encode {size} H.264 frames/s", "value": round(args.frames / encode, 1),
                        "unit": "1/s", "baseline_metric": f"render only {size} frames/s",
                        "baseline_value": round(args.frames / render, 1)})
        figures.append({"metric": f"encode {size} x real time at {FPS} fps", "value": round(args.frames / encode / FPS,
                                                                                              1), "unit": "x"})
        figures.append({"metric": f"encode {size} H.264 frames per CPU-second", "value": round(
            args.frames / encode_cpu, 1), "unit": "1/s", "baseline_metric": f"render only {size} frames per CPU-second",
            "baseline_value": round(args.frames / max(1e-6, min(c for _, c in renders)), 1)})
        if args.baseline_encoder:
            figures += _versus(args.baseline_encoder, width, height, args.frames, args.rounds)
    width, height = SIZES[-1]
    render_peak = _peak_mib("render", width, height, 240)
    for mode, label in (("stream", "job (streamed)"), ("held", "all frames held, then encoded")):
        peak = _peak_mib(mode, width, height, 240)
        figures.append({"metric": f"peak RSS added, 240 frames 1024x576, {label}", "value": round(peak, 1),
                        "unit": "MiB", "baseline_metric": "peak RSS added, render only",
                        "baseline_value": round(render_peak, 1)})
    result = {"name": "video", "frames": args.frames, "cpus": os.cpu_count(),
              "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)], "figures": figures}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
