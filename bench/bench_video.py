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
Figures are printed, never asserted; the best of ``--rounds`` is kept for throughput (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
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


def _render_only(width: int, height: int, count: int) -> float:
    started = time.perf_counter()
    for _ in _frames(width, height, count):
        pass
    return time.perf_counter() - started


def _render_and_encode(width: int, height: int, count: int) -> float:
    started = time.perf_counter()
    encode_video(_frames(width, height, count), width=width, height=height, fps=FPS, expected_frames=count)
    return time.perf_counter() - started


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
    args = parser.parse_args(argv)
    if args.child:
        mode, w, h, n = args.child
        child(mode, int(w), int(h), int(n))
        return 0
    figures = []
    for width, height in SIZES:
        render = min(_render_only(width, height, args.frames) for _ in range(args.rounds))
        total = min(_render_and_encode(width, height, args.frames) for _ in range(args.rounds))
        encode = max(1e-6, total - render)
        size = f"{width}x{height}"
        figures.append({"metric": f"encode {size} H.264 frames/s", "value": round(args.frames / encode, 1),
                        "unit": "1/s", "baseline_metric": f"render only {size} frames/s",
                        "baseline_value": round(args.frames / render, 1)})
        figures.append({"metric": f"encode {size} x real time at {FPS} fps", "value": round(args.frames / encode / FPS,
                                                                                              1), "unit": "x"})
    width, height = SIZES[1]
    render_peak = _peak_mib("render", width, height, 240)
    for mode, label in (("stream", "job (streamed)"), ("held", "all frames held, then encoded")):
        peak = _peak_mib(mode, width, height, 240)
        figures.append({"metric": f"peak RSS added, 240 frames 1024x576, {label}", "value": round(peak, 1),
                        "unit": "MiB", "baseline_metric": "peak RSS added, render only",
                        "baseline_value": round(render_peak, 1)})
    result = {"name": "video", "frames": args.frames, "figures": figures}
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
