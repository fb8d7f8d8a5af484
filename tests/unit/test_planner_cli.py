"""The planner end to end on short traces: `python -m planner run|sweep`, traces, workloads, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from components import vcpu_quotas
from components.scaling_plan import on_demand_percentage
from genai_policies.pricing import load_prices
from planner import traces, workload
from planner.__main__ import main, stack_rate
from planner.report import summarise
from planner.sim import SaturatedError
from planner.sizing import SizingError, vcpus_of
from planner.stack import load_stack
from planner.sweep import Candidate, recommend


def _csv(tmp_path, rows: int = 600, rate: float = 2.0):
    path = tmp_path / "trace.csv"
    lines = ["timestamp,model"] + [f"{1_700_000_000 + i / rate:.3f},{'sdxl' if i % 3 else 'sd15'}"
                                   for i in range(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_end_to_end_on_a_csv_trace(tmp_path, capsys):
    png, out = tmp_path / "plan.png", tmp_path / "plan.json"
    code = main(["run", "--stack", "dev", "--trace", str(_csv(tmp_path)), "--workload", "mix",
                 "--plot", str(png), "--json", str(out)])
    text = capsys.readouterr().out
    assert code == 0, text
    for label in ("queue wait", "p95", "end to end", "on-demand: peak", "spot: peak", "jobs lost 0",
                  "wanted its maximum", "per 1,000 images", "per month", "service-time basis"):
        assert label in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    summary = json.loads(out.read_text())
    assert summary["jobs"] == 600 and summary["lost"] == 0
    assert max(summary["peak"].values()) <= summary["peak_total"] <= sum(summary["peak"].values())
    assert summary["wait"][0] <= summary["wait"][1] <= summary["wait"][2]
    assert summary["e2e"][1] > summary["wait"][1]  # end to end adds service time
    # dev is spot only: spot instances cost g6.xlarge x (1 - g6 spot discount) per hour
    table = load_prices()
    spot_hourly = table.on_demand("us-east-1", "g6.xlarge") * (1 - table.spot_discount("g6"))
    ec2 = dict(map(tuple, summary["cost_lines"]))["EC2 g6.xlarge spot"]
    assert ec2 == pytest.approx(summary["average"]["spot"] * summary["duration_s"] / 3600 * spot_hourly)


def test_sweep_recommends_the_cheapest_setting_that_meets_the_goal(tmp_path, capsys):
    out = tmp_path / "sweep.json"
    code = main(["sweep", "--stack", "prod", "--trace", "constant:rate=3,hours=0.5", "--workload", "sd15",
                 "--targets", "1,4", "--warm-pools", "0,1", "--bases", "0,2", "--p95-wait", "60", "--warm-start",
                 "--json", str(out)])
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert len(rows) == 8
    skipped = [r for r in rows if r["summary"] is None]
    assert skipped and all("warmPoolSize" in r["problem"] for r in skipped)  # a warm pool needs a base
    ok = [r for r in rows if r["summary"] and r["summary"]["wait"][1] <= 60]
    assert code == 0 and ok
    best = min(ok, key=lambda r: (round(r["summary"]["cost_per_1000"], 6), r["summary"]["wait"][1]))
    label = " ".join(f"{k}={v}" for k, v in best["settings"].items())
    assert f"cheapest with p95 queue wait <= 60 s: {label}" in text
    assert best["settings"]["averageJobSeconds"] == "1.5"


def test_recommend_none_when_nothing_meets_the_goal():
    assert recommend([Candidate({"a": "1"}, None, "bad")], 10) is None


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "--trace", "weekly:peak=3"], "constant:..."),
    (["run", "--trace", "constant:speed=3"], "unknown parameter 'speed=3'"),
    (["run", "--set", "maxSize=lots"], "genai-fleet:maxSize = lots"),
    (["run", "--set", "maxSize"], "KEY=VALUE"),
    (["run", "--stack", "staging"], "use one of dev, prod"),
    (["run", "--workload", "sdxxl"], "sdxl, sd15, mix"),
])
def test_bad_input_says_what_to_change(argv, needle, capsys):
    assert main([*argv, "--plot", ""]) == 2
    assert needle in capsys.readouterr().err


def test_rate_traces_have_the_shape_they_name():
    rate = traces.rate_curve("diurnal", {"peak": 100.0, "trough": 20.0, "hours": 24.0})
    assert rate[4 * 3600] == pytest.approx(20.0) and rate[16 * 3600] == pytest.approx(100.0)
    bursts = traces.rate_curve("bursts", {"base": 5.0, "peak": 50.0, "every": 600.0, "length": 60.0, "hours": 1.0})
    assert bursts[30] == 50.0 and bursts[90] == 5.0 and bursts[630] == 50.0
    t = traces.load("constant:rate=20,hours=1", seed=4)
    assert np.all(np.diff(t.times) >= 0) and abs(len(t.times) - 72_000) < 4 * 72_000**0.5
    assert np.array_equal(t.times, traces.load("constant:rate=20,hours=1", seed=4).times)  # seeded


def test_csv_trace_with_iso_times_and_models(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("timestamp,model\n2026-01-01T00:00:02Z,b\n2026-01-01T00:00:00Z,a\n2026-01-01T00:00:01.5Z,b\n")
    t = traces.from_csv(path)
    assert t.times.tolist() == [0.0, 1.5, 2.0] and t.model_names == ("a", "b") and t.models.tolist() == [0, 1, 1]
    bad = tmp_path / "bad.csv"
    bad.write_text("time\n1\n")
    with pytest.raises(traces.TraceError, match="'timestamp' column"):
        traces.from_csv(bad)


def test_workload_file_and_measured_phases(tmp_path):
    spec = tmp_path / "w.yaml"
    spec.write_text("models:\n  - {name: x, share: 1, service: {mean: 4, cv: 0.2}, switch_seconds: 1}\n"
                    "cold_phases: {boot: 50}\n")
    phases = tmp_path / "scaleout.json"
    phases.write_text(json.dumps({"cold_phases": {"ec2_launch": {"samples": [10, 20, 30]}}}))
    w = workload.load(str(spec), str(phases))
    assert w.mean_service == 4 and w.cold_phases["boot"].mean == 50
    assert w.cold_phases["ec2_launch"].kind == "empirical" and w.cold_phases["ec2_launch"].mean == 20
    spec.write_text("models:\n  - {name: x, service: {mean: 4, kind: gamma}}\n")
    with pytest.raises(workload.WorkloadError, match="kind"):
        workload.load(str(spec))


def test_grid_sweeps_the_utilisation_target_and_can_turn_it_off():
    from planner.sweep import grid

    cands = grid(workload.BUILTIN["sd15"], [2.0], [0], [0, 2], [None, 70])
    assert len(cands) == 4
    assert {c["gpuUtilizationTarget"] for c in cands} == {"", "70"}
    assert all(c["acceptableWaitSeconds"] == "3" and c["averageJobSeconds"] == "1.5" for c in cands)
    assert "gpuUtilizationTarget=off" in Candidate(cands[0], None).label()
    assert "gpuUtilizationTarget" not in grid(workload.BUILTIN["sd15"], [2.0], [0], [0])[0]


@pytest.mark.parametrize("goal", [10, 1000])  # 1000: the wait allows a fleet busy all the time; the busy cap does not
def test_size_finds_the_smallest_max_size_that_meets_the_goal(goal):
    from planner.sizing import MAX_UTILISATION, size_for
    from planner.sweep import simulate

    work = workload.load("sd15")
    trace = traces.load("constant:rate=4,hours=0.25", seed=1)
    sizing = size_for(lambda o: load_stack("prod", o), work, trace, rate=4, p95_goal=goal)
    best = sizing.best
    assert best.meets and best.summary.wait[1] <= goal and best.summary.utilisation <= MAX_UTILISATION
    assert best.max_size >= 4 * work.mean_service  # never below the size that is busy all the time
    smaller = load_stack("prod", {"maxSize": str(best.max_size - 1)})
    try:  # one instance fewer misses the goal (or cannot keep up at all)
        s = summarise(simulate(smaller, work, trace, 1, 1, warm_start=True), smaller.region)
        assert s.wait[1] > goal or s.utilisation > MAX_UTILISATION or s.lost
    except SaturatedError:
        pass
    # the quota is the stack's own formula at that size (largest type x instances per market)
    assert {n.quota.code: n.vcpus for n in sizing.needs} == {
        n.quota.code: n.vcpus for n in vcpu_quotas.stack_needs(
            smaller.cluster.instance_types, {t: vcpus_of(t) for t in smaller.cluster.instance_types},
            best.max_size, smaller.cluster.on_demand_base, on_demand_percentage(smaller.cluster.spot_share))}


def test_size_command_prints_max_size_quota_and_monthly_cost(capsys):
    code = main(["size", "--stack", "dev", "--rate", "2", "--hours", "0.25", "--workload", "sd15", "--p95-wait", "60"])
    out = capsys.readouterr().out
    assert code == 0, out
    line = next(x for x in out.splitlines() if x.startswith("  for 2 jobs/s"))
    assert "maxSize" in line and "per month" in line and "per 1,000 images" in line
    assert 'EC2 quota "All G and VT Spot Instance Requests" (L-3819A6DF)' in out and "vCPUs" in out


def test_size_says_when_scaling_settings_not_max_size_miss_the_goal(capsys):
    # dev scales out at 30 s waits: a 10 s goal is out of reach at any maxSize, and the planner says why
    code = main(["size", "--stack", "dev", "--rate", "2", "--hours", "0.25", "--workload", "sd15", "--p95-wait", "10"])
    err = capsys.readouterr().err
    assert code == 1
    assert "acceptableWaitSeconds = 30" in err and "more instances are not what is missing" in err


def test_size_refuses_a_rate_of_zero_and_types_of_unknown_size(capsys):
    assert main(["size", "--stack", "dev", "--rate", "0"]) == 2
    assert "--rate" in capsys.readouterr().err
    assert [vcpus_of(t) for t in ("g6.xlarge", "g5.12xlarge", "inf2.48xlarge", "p5.48xlarge")] == [4, 48, 192, 192]
    with pytest.raises(SizingError, match=r"g4dn\.metal"):
        vcpus_of("g4dn.metal")


def test_plan_without_a_trace_runs_the_rate_the_stack_is_sized_for(capsys):
    code = main(["run", "--stack", "dev", "--plot", ""])
    out = capsys.readouterr().out
    assert code == 0, out
    cfg, work = load_stack("dev"), workload.load("sd15")
    assert f"a day peaking at {stack_rate(cfg, work):g} jobs/s, the rate stack dev is sized for" in out
    assert "jobs lost 0" in out


def test_the_video_workload_has_minutes_long_jobs(tmp_path):
    out = tmp_path / "video.json"
    code = main(["run", "--stack", "prod", "--workload", "video", "--trace", "constant:rate=0.2,hours=0.5",
                 "--warm-start", "--plot", "", "--json", str(out)])
    summary = json.loads(out.read_text())
    assert code == 0 and summary["lost"] == 0
    assert workload.load("video").mean_service == 40.0
    assert summary["e2e"][0] >= 30.0  # a video job's end to end is its service time, not an image's
