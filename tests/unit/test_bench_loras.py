"""bench/bench_loras.py runs and writes rows the bench table reads: LoRA swaps beside a base reload of the same
run, and the base's disk loads during the swaps (figures are printed by ``make bench``, never asserted)."""

from __future__ import annotations

import json

from bench import bench_loras
from tools.bench import rows_of


def test_the_lora_bench_writes_swaps_against_a_base_reload(tmp_path):
    out = tmp_path / "loras.json"
    assert bench_loras.main(["--out", str(out), "--rounds", "1", "--loras", "2"]) == 0
    metrics = {r["metric"]: r for r in rows_of(json.loads(out.read_text()))}
    for swap in ("LoRA swap, adapter new to the pipeline s", "LoRA swap, adapter loaded s"):
        assert metrics[swap]["baseline_metric"] == "base reload s" and metrics[swap]["value"] > 0
    assert metrics["base loads from disk during the swaps"]["value"] == 0
