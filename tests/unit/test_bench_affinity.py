"""The affinity simulation runs the real consumer: same workload, fewer switches than FIFO, no starvation."""

from __future__ import annotations

from bench import bench_affinity


def test_small_simulation_switches_less_than_fifo_and_bounds_the_wait():
    cfg = {**bench_affinity.DEFAULTS, "jobs": 600, "load": 0.3}
    fifo = bench_affinity.simulate(cfg, affinity=False)
    aff = bench_affinity.simulate(cfg, affinity=True)
    assert fifo["jobs"] == aff["jobs"] == 600
    assert aff["switches_per_1000_jobs"] * 5 <= fifo["switches_per_1000_jobs"]
    # the overdue bound holds: no job waits much past max_wait_seconds (+ a probe and a poll interval)
    assert aff["max_queue_wait_s"] <= cfg["max_wait_seconds"] + cfg["probe_seconds"] + cfg["poll_seconds"] + 5
