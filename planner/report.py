"""What a run means: latency percentiles, instances by market, jobs lost, and what it costs.

Instances are priced from the policy pack's table (``policies/prices.json`` through
``policies/genai_policies/pricing.py``): on-demand at the list price, spot at the family's typical
discount, each at the type the group prefers (its first instance type; the policy pack's budget check
takes the most expensive type instead, as an upper bound). EBS is not in that table yet: root volumes
of running instances and the volumes of stopped warm-pool instances are priced at gp3's us-east-1 list
price, ``EBS_GP3_PER_GB_MONTH`` (aws.amazon.com/ebs/pricing, an assumption outside us-east-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.launch_template import ROOT_VOLUME_GIB, WARM_POOL_ROOT_VOLUME_GIB
from genai_policies.pricing import PriceTable, load_prices
from planner.sim import ON_DEMAND, SimResult

EBS_GP3_PER_GB_MONTH = 0.08
MARKETS = {ON_DEMAND: "on-demand", 1: "spot"}


@dataclass(frozen=True)
class Summary:
    jobs: int
    lost: int
    duration_s: float
    wait: tuple[float, float, float]  # p50, p95, p99 (s)
    e2e: tuple[float, float, float]
    peak: dict[str, int]  # market -> peak instances alive
    peak_total: int  # peak of all instances alive at one time
    average: dict[str, float]  # market -> average instances alive
    utilisation: float  # busy share of InService instance time
    cost_usd: float
    cost_per_1000: float
    cost_per_month: float
    handed_back: int
    interruptions: int
    launches: int
    cost_lines: tuple[tuple[str, float], ...]

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def _pct(values: np.ndarray) -> tuple[float, float, float]:
    p50, p95, p99 = np.percentile(values, [50, 95, 99]) if len(values) else (0.0, 0.0, 0.0)
    return float(p50), float(p95), float(p99)


def cost_lines(r: SimResult, region: str, table: PriceTable | None = None) -> list[tuple[str, float]]:
    table = table or load_prices()
    lines: list[tuple[str, float]] = []
    for (market, itype), seconds in sorted(r.instance_seconds.items()):
        hourly = table.on_demand(region, itype)
        if hourly is None:
            raise ValueError(f"no {region} price for {itype} in policies/prices.json: add it or pick another type")
        if market != ON_DEMAND:
            hourly *= 1.0 - table.spot_discount(itype)
        lines.append((f"EC2 {itype} {MARKETS[market]}", seconds / 3600.0 * hourly))
    ebs_hour = EBS_GP3_PER_GB_MONTH / table.hours
    running = sum(r.instance_seconds.values()) / 3600.0
    lines.append((f"EBS {ROOT_VOLUME_GIB} GiB roots", running * ROOT_VOLUME_GIB * ebs_hour))
    if r.warm_pool_seconds:
        lines.append((f"EBS warm pool ({WARM_POOL_ROOT_VOLUME_GIB} GiB each)",
                      r.warm_pool_seconds / 3600.0 * WARM_POOL_ROOT_VOLUME_GIB * ebs_hour))
    return lines


def summarise(r: SimResult, region: str, table: PriceTable | None = None) -> Summary:
    table = table or load_prices()
    lines = cost_lines(r, region, table)
    total = sum(c for _, c in lines)
    duration = max(r.end_time, 1e-9)
    peak = {name: max((s.alive_on_demand if m == ON_DEMAND else s.alive_spot) for s in r.samples)
            for m, name in MARKETS.items()}
    average = {name: sum(sec for (mk, _), sec in r.instance_seconds.items() if mk == m) / duration
               for m, name in MARKETS.items()}
    return Summary(
        jobs=r.arrivals, lost=r.lost, duration_s=duration, wait=_pct(r.waits), e2e=_pct(r.e2e), peak=peak,
        peak_total=max(s.alive_on_demand + s.alive_spot for s in r.samples),
        average=average, utilisation=r.busy_seconds / max(r.in_service_seconds, 1e-9), cost_usd=total,
        cost_per_1000=1000.0 * total / max(r.completed, 1), cost_per_month=total / duration * table.hours * 3600.0,
        handed_back=r.handed_back, interruptions=r.interruptions, launches=r.launches, cost_lines=tuple(lines))


def render(s: Summary, title: str) -> str:
    out = [title,
           f"  jobs {s.jobs:,} over {s.duration_s / 3600:.2f} h; jobs lost {s.lost}; handed back at spot notices "
           f"{s.handed_back} ({s.interruptions} interruptions); instance launches {s.launches}",
           f"  queue wait   p50 {s.wait[0]:8.2f} s   p95 {s.wait[1]:8.2f} s   p99 {s.wait[2]:8.2f} s",
           f"  end to end   p50 {s.e2e[0]:8.2f} s   p95 {s.e2e[1]:8.2f} s   p99 {s.e2e[2]:8.2f} s",
           f"  instances    peak {s.peak_total} at once;   "
           + "   ".join(f"{m}: peak {s.peak[m]}, average {s.average[m]:.1f}" for m in s.peak),
           f"  utilisation  {100 * s.utilisation:.0f} % of InService instance time busy",
           f"  cost         ${s.cost_usd:,.2f} for the run; ${s.cost_per_1000:.3f} per 1,000 images; "
           f"${s.cost_per_month:,.0f} per month at this run's average"]
    out += [f"    {name:40s} ${usd:,.2f}" for name, usd in s.cost_lines]
    return "\n".join(out)
