"""Arrival traces: when jobs arrive and which model each one asks for.

A trace spec is one string, so that ``make plan TRACE=...`` can carry it:

- ``constant:rate=100,hours=24``                    Poisson arrivals at a fixed rate (per second)
- ``diurnal:peak=100,trough=20,hours=24``           rate follows a day curve: trough at 04:00, peak at 16:00
- ``bursts:base=20,peak=100,every=3600,length=300,hours=24``  square bursts on a base rate
- ``path/to/trace.csv``                             one job per row: ``timestamp`` (seconds, or ISO 8601)
                                                    and optional ``model``; times are taken relative to the first

Rate-driven traces are non-homogeneous Poisson processes built per second (counts per second are
Poisson, times uniform within the second), generated with numpy from a seeded generator.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np


class TraceError(ValueError):
    """A trace spec or trace file that cannot be read; the message says what to change."""


@dataclass
class Trace:
    """Arrival times (seconds from 0, sorted) and a model index per job into ``models`` (None: the mix)."""

    name: str
    times: np.ndarray
    models: np.ndarray | None = None
    model_names: tuple[str, ...] = ()
    rate_per_second: np.ndarray | None = None  # the offered rate per second, when the trace has one

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0


_DEFAULTS = {
    "constant": {"rate": 100.0, "hours": 1.0},
    "diurnal": {"peak": 100.0, "trough": 20.0, "hours": 24.0},
    "bursts": {"base": 20.0, "peak": 100.0, "every": 3600.0, "length": 300.0, "hours": 24.0},
}


def _params(kind: str, text: str) -> dict[str, float]:
    out = dict(_DEFAULTS[kind])
    for part in filter(None, text.split(",")):
        key, sep, value = part.partition("=")
        if not sep or key.strip() not in out:
            raise TraceError(f"trace {kind}: unknown parameter {part!r}; allowed: {', '.join(out)}")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise TraceError(f"trace {kind}: {key.strip()} = {value!r} must be a number") from None
        if out[key.strip()] < 0:
            raise TraceError(f"trace {kind}: {key.strip()} must not be negative")
    if out["hours"] <= 0:
        raise TraceError(f"trace {kind}: hours must be above 0")
    return out


def rate_curve(kind: str, p: dict[str, float]) -> np.ndarray:
    """Offered rate (jobs per second) for each second of the trace."""
    t = np.arange(math.ceil(p["hours"] * 3600), dtype=float)
    if kind == "constant":
        return np.full_like(t, p["rate"])
    if kind == "diurnal":
        hour = (t / 3600.0) % 24.0
        shape = 0.5 - 0.5 * np.cos(2 * np.pi * (hour - 4.0) / 24.0)  # 0 at 04:00, 1 at 16:00
        return p["trough"] + (p["peak"] - p["trough"]) * shape
    if p["every"] <= 0:
        raise TraceError("trace bursts: every must be above 0")
    in_burst = (t % p["every"]) < p["length"]
    return np.where(in_burst, p["peak"], p["base"])


def poisson_arrivals(rate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    counts = rng.poisson(rate)
    starts = np.repeat(np.arange(len(rate), dtype=float), counts)
    times = starts + rng.random(len(starts))
    times.sort()
    return times


def from_csv(path: Path) -> Trace:
    if not path.exists():
        raise TraceError(f"trace file {path} does not exist")
    times: list[float] = []
    models: list[str] = []
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or "timestamp" not in reader.fieldnames:
            raise TraceError(f"{path}: needs a header row with a 'timestamp' column (and optionally 'model')")
        for line, row in enumerate(reader, start=2):
            times.append(_timestamp(row["timestamp"], path, line))
            models.append((row.get("model") or "").strip())
    if not times:
        raise TraceError(f"{path}: no rows")
    order = np.argsort(np.asarray(times), kind="stable")
    t = np.asarray(times)[order]
    t -= t[0]
    names = tuple(sorted({m for m in models if m}))
    idx = None
    if names:
        lookup = {m: i for i, m in enumerate(names)}
        if "" in models:
            raise TraceError(f"{path}: some rows name a model and some do not; fill the 'model' column everywhere")
        idx = np.asarray([lookup[m] for m in models], dtype=np.int32)[order]
    return Trace(name=path.name, times=t, models=idx, model_names=names)


def _timestamp(raw: str, path: Path, line: int) -> float:
    raw = (raw or "").strip()
    try:
        return float(raw)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise TraceError(f"{path}:{line}: timestamp {raw!r} is neither seconds nor ISO 8601") from None


def load(spec: str, seed: int = 1) -> Trace:
    """Build the trace a spec names (see the module docstring)."""
    kind, _, rest = spec.partition(":")
    if kind in _DEFAULTS:
        p = _params(kind, rest)
        rate = rate_curve(kind, p)
        return Trace(name=spec, times=poisson_arrivals(rate, np.random.default_rng(seed)), rate_per_second=rate)
    path = Path(spec)
    if path.suffix.lower() == ".csv" or path.exists():
        return from_csv(path)
    raise TraceError(f"trace {spec!r}: use constant:..., diurnal:..., bursts:... or a CSV file path")
