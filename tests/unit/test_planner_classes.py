"""Issue 44, point 3 (d): the planner models deadlines, admission control and priority classes under overload
(planner/classes.py), with the scheduling the workers are to follow (runtime.jobs.priorities: a queue per class,
smooth weighted round robin). Seeded runs: figures, not timings."""

from __future__ import annotations

import pytest

from planner.__main__ import main
from planner.classes import run_classes
from runtime.jobs.priorities import POLL_WEIGHTS, WeightedPicker, jobs_ahead

SHARES = {"high": 0.2, "normal": 0.5, "low": 0.3}
OVERLOAD = {"servers": 10, "service_s": 2.0, "overload": 1.5, "shares": SHARES, "seconds": 600}


def test_weighted_polling_gives_each_busy_class_its_share_and_low_one_pick_in_twelve():
    picker = WeightedPicker()
    picks = [picker.pick({"high", "normal", "low"}) for _ in range(120)]
    assert [picks.count(c) for c in ("high", "normal", "low")] == [80, 30, 10]
    window = sum(POLL_WEIGHTS.values())
    assert all("low" in picks[i:i + window] for i in range(len(picks) - window + 1))
    assert WeightedPicker().pick(set()) is None and WeightedPicker().pick({"low"}) == "low"


def test_jobs_ahead_of_a_class_under_the_weighted_polling():
    queued = {"high": 2, "normal": 30, "low": 100}
    assert jobs_ahead(queued, "high") < 5  # 8 of 12 picks: about 1.5 picks per high job ahead
    assert jobs_ahead(queued, "low") == 132  # 1 of 12 would be 1211: never more than every queued job
    assert jobs_ahead({"normal": 10}, "normal") == 10  # alone, it is FIFO


def test_under_overload_high_waits_little_while_low_still_completes():
    by = run_classes(**OVERLOAD).by_name()
    high, low = by["high"], by["low"]
    assert high.p95_wait <= 2 * OVERLOAD["service_s"], high  # within two service times
    assert low.started == low.arrivals and low.p95_wait > 10 * high.p95_wait, low  # slower, never starved


def test_a_started_job_never_waited_past_its_deadline():
    deadlines = {"high": 10, "normal": 30, "low": 120}
    result = run_classes(**OVERLOAD, deadlines=deadlines).by_name()
    for name, stats in result.items():
        assert stats.max_wait is None or stats.max_wait <= deadlines[name], stats
    assert result["low"].expired > 0  # sustained overload: low jobs expire in the queue (canceled, no cost)


def test_admission_with_the_class_estimate_refuses_no_high_job_and_lets_none_expire():
    result = run_classes(**OVERLOAD, deadlines={"high": 10, "normal": 30, "low": 120}, admission_s=20).by_name()
    assert result["high"].refused == 0 and result["high"].started == result["high"].arrivals
    assert all(s.expired == 0 for s in result.values()) and result["low"].refused > 0


def test_the_classes_command_prints_p95_per_class_and_refuses_bad_input(capsys):
    assert main(["classes", "--seconds", "120", "--deadlines", "high=10", "--admission", "20"]) == 0
    out = capsys.readouterr().out
    assert "p95 wait" in out and all(f"\n{c} " in out for c in ("high", "normal", "low"))
    assert main(["classes", "--shares", "urgent=1"]) == 2
    assert "shares" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["classes", "--shares", "high"])
