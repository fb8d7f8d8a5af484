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


def test_the_tuned_defaults_meet_the_switch_goal_on_a_seed_they_were_not_tuned_on():
    """The idle switch (13 s) and switch_after (20 s) were tuned on seed 7 of this simulation; a small run on
    another seed must still meet the goals the bench reports (issue 33: tuned defaults checked on unseen seeds)."""
    seed = bench_affinity.DEFAULTS["unseen_seeds"][0]
    assert seed != bench_affinity.DEFAULTS["seed"]
    cfg = {**bench_affinity.DEFAULTS, "jobs": 600, "load": 0.25, "seed": seed}
    switches, wait = bench_affinity.goals(bench_affinity.simulate(cfg, affinity=False),
                                          bench_affinity.simulate(cfg, affinity=True))
    assert switches >= 5
    assert wait <= 1.2
