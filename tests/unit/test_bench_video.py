"""bench/bench_video.py runs and writes rows the bench table reads: encode throughput beside render-only
throughput, and the memory a streamed job adds beside holding every frame (small sizes here: figures are
printed by ``make bench``, never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_video
from runtime.video import encode
from tools.bench import rows_of


def test_the_video_bench_writes_paired_figures(tmp_path, monkeypatch):
    monkeypatch.setattr(bench_video, "SIZES", ((64, 64), (128, 64)))
    monkeypatch.setattr(bench_video, "_peak_mib", lambda mode, w, h, n: {"render": 1.0, "stream": 2.0,
                                                                          "held": 9.0}[mode])
    out = tmp_path / "video.json"
    assert bench_video.main(["--out", str(out), "--frames", "6", "--rounds", "1"]) == 0
    rows = rows_of(json.loads(out.read_text()))
    metrics = {r["metric"]: r for r in rows}
    assert metrics["encode 64x64 H.264 frames/s"]["baseline_metric"] == "render only 64x64 frames/s"
    assert metrics["encode 128x64 H.264 frames/s"]["value"] > 0
    assert metrics["peak RSS added, 240 frames 1024x576, job (streamed)"]["value"] == 2.0
    assert metrics["peak RSS added, 240 frames 1024x576, all frames held, then encoded"]["baseline_value"] == 1.0
    cpu = metrics["encode 64x64 H.264 frames per CPU-second"]  # the figure a loaded machine does not skew
    assert cpu["value"] > 0 and cpu["baseline_metric"] == "render only 64x64 frames per CPU-second"
    assert len(json.loads(out.read_text())["load_average"]) == 2


def test_another_encoder_runs_on_the_same_frames_in_the_same_run(tmp_path, monkeypatch):
    """--baseline-encoder: before/after in one run (here the encoder against a copy of itself)."""
    monkeypatch.setattr(bench_video, "SIZES", ((64, 64),))
    monkeypatch.setattr(bench_video, "_peak_mib", lambda mode, w, h, n: 1.0)
    baseline = tmp_path / "encode_before.py"
    baseline.write_text(Path(encode.__file__).read_text())
    out = tmp_path / "video.json"
    assert bench_video.main(["--out", str(out), "--frames", "4", "--rounds", "1",
                             "--baseline-encoder", str(baseline)]) == 0
    row, cpu_row = [r for r in rows_of(json.loads(out.read_text())) if "this encoder" in r["metric"]]
    assert row["baseline_metric"] == "encoder of encode_before.py" and row["value"] > 0 and row["ratio"] > 0
    assert "per CPU-second" in cpu_row["metric"] and cpu_row["ratio"] > 0


def test_a_child_process_reports_the_memory_its_run_added():
    assert bench_video._peak_mib("stream", 64, 64, 4) >= 0
