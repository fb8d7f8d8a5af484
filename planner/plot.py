"""PNG of a run: offered load, backlog and instances over time (matplotlib, Agg backend: no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from planner.sim import SimResult


def plot(r: SimResult, path: Path, title: str, period: float = 60.0) -> Path:
    t = np.asarray([s.t for s in r.samples]) / 3600.0
    edges = np.arange(0.0, (len(r.samples) + 1) * period, period)
    load = np.histogram(r.trace_times, bins=edges)[0][: len(t)] / period
    fig, (a1, a2, a3) = plt.subplots(3, 1, sharex=True, figsize=(10, 8), constrained_layout=True)
    a1.plot(t, load, color="tab:blue")
    a1.set_ylabel("arrivals (jobs/s)")
    a1.set_title(title)
    a2.plot(t, [s.queue for s in r.samples], color="tab:red")
    a2.set_ylabel("backlog (jobs queued)")
    a3.plot(t, [s.in_service for s in r.samples], label="InService")
    a3.plot(t, [s.pending for s in r.samples], label="pending (launching)")
    a3.plot(t, [s.alive_spot for s in r.samples], label="alive spot", linestyle="--")
    a3.plot(t, [s.alive_on_demand for s in r.samples], label="alive on-demand", linestyle="--")
    a3.plot(t, [s.desired_spot for s in r.samples], label="spot group desired", linestyle=":")
    a3.set_ylabel("instances")
    a3.set_xlabel("hours")
    a3.legend(loc="upper left", fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
