"""Capacity planner: simulate the fleet a stack deploys against a trace, before paying for it.

    python -m planner run   --stack prod --trace diurnal:peak=100,trough=20 --workload sdxl [--set maxSize=1000]
    python -m planner sweep --stack prod --trace diurnal:peak=100,trough=20 --workload sd15 --p95-wait 10 \\
        --targets 1,2,4 --warm-pools 0,2 --bases 0,2
    python -m planner size  --stack prod --rate 100 --workload sd15 --p95-wait 10
    python -m planner classes --servers 10 --service 2 --overload 1.5 --shares high=0.2,normal=0.5,low=0.3 \
        [--deadlines high=10,normal=30,low=120] [--admission 20]      (issue 44: planner/classes.py)

Without ``--trace``, ``run`` and ``sweep`` use a day whose peak is the rate the stack is sized for
(``stack_rate``: maxSize instances 80 % busy with the workload's mean service time), trough a fifth of it.

Exit status: 0 done, 1 the sweep found no setting that meets the goal, 2 bad input (the message says
what to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from components.config import ConfigError
from planner import traces, workload
from planner.report import render, summarise
from planner.sizing import SizingError, render_sizing, size_for
from planner.stack import StackError, load_stack, parse_overrides
from planner.sweep import grid, recommend, render_table, simulate, sweep
from planner.workload import WorkloadError


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def _utilisations(text: str) -> list[int | None]:
    return [None if x.strip() == "off" else int(x) for x in text.split(",") if x.strip()]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m planner", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("run", "sweep", "size"):
        s = sub.add_parser(name)
        s.add_argument("--stack", default="dev", help="reads Pulumi.<stack>.yaml")
        s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a stack setting")
        s.add_argument("--trace", default=None,
                       help="constant:rate=R,hours=H | diurnal:peak=P,trough=T,hours=H | "
                            "bursts:base=B,peak=P,every=S,length=S,hours=H | FILE.csv "
                            "(default: a day peaking at the rate the stack is sized for; size: constant at --rate)")
        s.add_argument("--workload", default="sd15", help="sdxl | sd15 | mix | video | FILE.yaml")
        s.add_argument("--scaleout", help="launch phases measured by `make measure-scaleout` (JSON)")
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--lag", type=int, default=1, help="minutes between a metric datapoint and its use")
        s.add_argument("--json", type=Path, help="also write the summary here")
        s.add_argument("--warm-start", action="store_true",
                       help="start with the spot group sized for the first minute's load instead of at its minimum")
    run = sub.choices["run"]
    run.add_argument("--plot", type=lambda text: Path(text) if text else None, default=Path("plan.png"),
                     help="PNG of load, backlog and instances ('' for none)")
    sw = sub.choices["sweep"]
    sw.add_argument("--p95-wait", type=float, default=10.0, help="latency goal: p95 queue wait (s)")
    sz = sub.choices["size"]
    sz.add_argument("--rate", type=float, required=True, help="steady arrival rate to size for (jobs/s)")
    sz.add_argument("--hours", type=float, default=1.0, help="length of the constant trace each size is run on")
    sz.add_argument("--p95-wait", type=float, default=10.0, help="latency goal: p95 queue wait (s)")
    sw.add_argument("--targets", type=_floats, default=[1.0, 2.0, 4.0], help="backlog per instance targets")
    sw.add_argument("--warm-pools", type=_ints, default=None, help="warm pool sizes (default: the stack's)")
    sw.add_argument("--bases", type=_ints, default=None, help="on-demand base sizes (default: the stack's)")
    sw.add_argument("--utilisations", type=_utilisations, default=(),
                    help="GPU utilisation targets, 'off' for none (default: the stack's)")
    _classes_parser(sub)
    return p


def _per_class(text: str) -> dict[str, float]:
    """``high=0.2,normal=0.5`` -> {"high": 0.2, "normal": 0.5}; the names are checked by planner/classes.py."""
    out: dict[str, float] = {}
    for part in (p for p in text.split(",") if p.strip()):
        name, sep, value = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"{part!r}: write CLASS=NUMBER, e.g. high=0.2")
        out[name.strip()] = float(value)
    return out


def _classes_parser(sub) -> None:
    """Issue 44: deadlines, admission control and priority classes under overload (planner/classes.py)."""
    c = sub.add_parser("classes", help="p95 wait per priority class under overload, with deadlines and admission")
    c.add_argument("--servers", type=int, default=10, help="workers, one job at a time")
    c.add_argument("--service", type=float, default=2.0, help="mean service time (s)")
    c.add_argument("--overload", type=float, default=1.5, help="arrival rate / the fleet's throughput")
    c.add_argument("--shares", type=_per_class, default={"high": 0.2, "normal": 0.5, "low": 0.3},
                   help="share of arrivals per class, e.g. high=0.2,normal=0.5,low=0.3")
    c.add_argument("--deadlines", type=_per_class, default={}, help="deadline_seconds per class, e.g. high=10")
    c.add_argument("--admission", type=float, default=None, help="apiAdmissionMaxWaitSeconds (s)")
    c.add_argument("--seconds", type=float, default=600.0, help="length of the overload (s)")
    c.add_argument("--seed", type=int, default=1)


def _classes(args) -> int:
    from planner.classes import render_classes, run_classes

    result = run_classes(servers=args.servers, service_s=args.service, overload=args.overload, shares=args.shares,
                         seconds=args.seconds, deadlines=args.deadlines or None, admission_s=args.admission,
                         seed=args.seed)
    print(render_classes(result, f"{args.servers} workers x {args.service:g} s, {args.overload:g}x overload for "
                                 f"{args.seconds:g} s; shares {args.shares}; deadlines {args.deadlines or 'none'}; "
                                 f"admission bound {args.admission or 'none'}"))
    return 0


def _run(args, cfg, work, trace) -> int:
    started = time.perf_counter()
    result = simulate(cfg, work, trace, args.seed, args.lag, args.warm_start)
    elapsed = time.perf_counter() - started
    summary = summarise(result, cfg.region)
    print(render(summary, f"stack {cfg.stack}, trace {trace.name}, workload {work.name} "
                          f"(simulated in {elapsed:.2f} s)"))
    print(f"  service-time basis: {work.basis}")
    spot_max = cfg.cluster.spot_max_size
    capped = sum(1 for x in result.samples if spot_max and x.desired_spot >= spot_max) / max(1, len(result.samples))
    if capped:
        print(f"  note: the spot group wanted its maximum ({spot_max}) in {100 * capped:.0f} % of the minutes; "
              f"raise maxSize (--set maxSize=N) to see what the load needs")
    if abs(cfg.cluster.average_job_seconds - work.mean_service) > 0.25 * work.mean_service:
        print(f"  note: the stack's averageJobSeconds = {cfg.cluster.average_job_seconds:g} but this workload "
              f"averages {work.mean_service:.2f} s; the backlog target assumes the former")
    if args.plot:
        from planner.plot import plot

        print(f"  plot: {plot(result, args.plot, f'{cfg.stack}: {trace.name}, {work.name}')}")
    if args.json:
        args.json.write_text(json.dumps({**summary.as_dict(), "simulated_seconds": elapsed}, indent=1))
    return 0


def _sweep(args, work, trace) -> int:
    base_cfg = load_stack(args.stack, parse_overrides(args.set))
    warm = args.warm_pools if args.warm_pools is not None else [base_cfg.cluster.warm_pool_size]
    bases = args.bases if args.bases is not None else [base_cfg.cluster.on_demand_base]
    fixed = parse_overrides(args.set)
    candidates = grid(work, args.targets, warm, bases, args.utilisations)
    cands = sweep(lambda o: load_stack(args.stack, {**fixed, **o}), work, trace, candidates,
                  args.seed, args.lag, args.warm_start,
                  progress=lambda c: print(f"  simulated {c.label()}", file=sys.stderr))
    best = recommend(cands, args.p95_wait)
    print(f"stack {args.stack}, trace {trace.name}, workload {work.name}; goal p95 queue wait <= {args.p95_wait:g} s")
    print(render_table(cands, best, args.p95_wait))
    if best is not None:
        print(render(best.summary, "recommended: " + best.label()))
    if args.json:
        args.json.write_text(json.dumps([{"settings": c.overrides, "problem": c.problem,
                                          "summary": c.summary.as_dict() if c.summary else None} for c in cands],
                                        indent=1))
    return 0 if best is not None else 1


def stack_rate(cfg, work) -> float:
    """Jobs/s the stack is sized for: ``maxSize`` instances 80 % busy at the workload's mean service time."""
    return round(cfg.cluster.max_size * 0.8 / work.mean_service, 2)


def _default_trace(cfg, work) -> str:
    peak = stack_rate(cfg, work)
    print(f"trace: a day peaking at {peak:g} jobs/s, the rate stack {cfg.stack} is sized for (maxSize "
          f"{cfg.cluster.max_size} x 80 % busy / {work.mean_service:.2f} s); --trace for another, "
          f"`size --rate R` for the fleet a rate needs")
    return f"diurnal:peak={peak:g},trough={round(peak / 5, 2):g},hours=24"


def _size(args, work) -> int:
    if args.rate <= 0 or args.hours <= 0:
        raise ValueError("--rate and --hours must be above 0")
    fixed = parse_overrides(args.set)
    trace = traces.load(args.trace or f"constant:rate={args.rate:g},hours={args.hours:g}", seed=args.seed)
    sizing = size_for(lambda o: load_stack(args.stack, {**fixed, **o}), work, trace, args.rate, args.p95_wait,
                      args.seed, args.lag,
                      progress=lambda t: print(f"  simulated maxSize={t.max_size}", file=sys.stderr))
    print(render_sizing(sizing, f"stack {args.stack}, trace {trace.name}, workload {work.name}"))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "classes":
            return _classes(args)
        work = workload.load(args.workload, args.scaleout)
        if args.command == "size":
            return _size(args, work)
        spec = args.trace or _default_trace(load_stack(args.stack, parse_overrides(args.set)), work)
        trace = traces.load(spec, seed=args.seed)
        if args.command == "sweep":
            return _sweep(args, work, trace)
        return _run(args, load_stack(args.stack, parse_overrides(args.set)), work, trace)
    except SizingError as exc:
        print(f"planner: {exc}", file=sys.stderr)
        return 1
    except (ConfigError, StackError, WorkloadError, traces.TraceError, ValueError) as exc:
        print(f"planner: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
