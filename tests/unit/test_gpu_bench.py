"""bench/gpu_bench.py runs end to end on the CPU with --tiny and prints every row the README table needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_bench_tiny_prints_the_table_and_writes_json(tmp_path: Path):
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/gpu_bench.py", "--tiny", "--runs", "1", "--work", str(tmp_path / "w"),
                           "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    for row in ("eager latency per image", "optimised latency per image", "first image, cold compile cache",
                "first image, warm compile cache", "images/s at batch 1 ", "images/s at batch 2 ",
                "model switch host RAM -> device", "model switch local disk -> device",
                "video: frames/s of txt2video generation (AnimateDiff (tiny), 64x64, 16 frames, 2 steps, CFG)",
                "video: one clip, prompt to encoded MP4"):
        assert row in done.stdout, row
    result = json.loads(out.read_text())
    assert result["tiny"] is True and result["device"] == "cpu" and set(result["images_per_s"]) == {"1", "2"}
    numbers = [result[k] for k in ("eager_s", "optimised_s", "first_image_cold_s", "first_image_warm_s",
                                   "switch_ram_s", "switch_disk_s", "video_clip_s", "video_frames_per_s")]
    numbers += list(result["images_per_s"].values())
    assert all(isinstance(n, float) and n > 0 for n in numbers)


@pytest.mark.slow
def test_the_video_phase_runs_alone_on_the_cpu(tmp_path: Path):
    """Issue 36: the GPU bench's video phase (AnimateDiff txt2video, 16 frames) runs on its own with --tiny."""
    out = tmp_path / "gpu.json"
    done = subprocess.run([sys.executable, "bench/gpu_bench.py", "--tiny", "--phases", "video", "--runs", "1",
                           "--work", str(tmp_path / "w"), "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                          timeout=400, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "| video: frames/s of txt2video generation (AnimateDiff (tiny), 64x64, 16 frames" in done.stdout
    result = json.loads(out.read_text())
    assert result["video_frames"] == 16 and result["video_size"] == 64
    assert result["video_frames_per_s"] == pytest.approx(16 / result["video_clip_s"])
    assert "eager_s" not in result and "video_peak_gib" not in result  # no GPU: no GPU memory figure
