"""Bench rows say what they measured (issue 33): a scaled emulation names its scale beside the full-scale row,
a tail over too few samples is named a maximum, and sections with no counterpart in the baseline get no ratio."""

from __future__ import annotations

from bench.bench_cache import S3_PER_CONNECTION_MB_S, capped_label
from bench.bench_local import tail
from tools.bench import rows_of


def test_a_p99_over_fewer_than_100_samples_is_named_the_maximum():
    ten = [float(i) for i in range(10)]
    assert tail(ten) == ("max of 10", 9.0)
    hundred = [float(i) for i in range(100)]
    assert tail(hundred)[0] == "p99"
    assert tail(ten, q=50)[0] == "p50"


def test_capped_download_rows_name_their_scale():
    assert "reduced scale: 25 MB/s" in capped_label(25.0) and "0.29 of S3's 87.5" in capped_label(25.0)
    assert "full scale: 87.5 MB/s" in capped_label(S3_PER_CONNECTION_MB_S)


def test_sections_without_a_baseline_counterpart_get_no_ratio():
    result = {"bare_backend_ms": {"p50": 50.0}, "agent_backend_ms": {"p50": 51.0}, "agent_overhead_ms": {"p50": 110.0},
              "unpaired": ["agent_overhead_ms"]}
    rows = {r["metric"]: r for r in rows_of(result)}
    assert rows["agent_backend_ms p50"]["baseline_metric"] == "bare_backend_ms p50"
    assert "baseline_metric" not in rows["agent_overhead_ms p50"]
