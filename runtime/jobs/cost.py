"""What a job cost: GPU-seconds and dollars per attempt, summed over every attempt of the job.

Each settled attempt appends one entry to the record's ``attempt_costs`` list, in the same conditional write
that settles it (succeeded, failed, retried, handed back, canceled), so failed and handed-back attempts count:
the figure is the truth about a job, not its happy path. An entry::

    {"attempt": 2, "lease": 3, "outcome": "succeeded", "instance_type": "g5.xlarge",
     "purchase_option": "spot", "hourly_usd": 0.4024, "price_source": "spot-price-history us-east-1a ...",
     "gpu_seconds": 1.84, "usd": 0.000206,
     "phases": {"model_load": 0.0, "inference": 1.61, "encode": 0.0, "upload": 0.12, "other": 0.11}}

``gpu_seconds`` is the attempt's wall time on the instance from its claim to its settle (an instance holds
its GPU for the whole of it); ``phases`` splits it (``other``: claim, inputs, record writes). Dollars are
``gpu_seconds x hourly_usd / 3600`` with the price the worker held when it settled (runtime.worker.prices says
where each price comes from and how stale it may be). An attempt whose worker died (lease expired) or was
fenced out records nothing: its time is not known to the record. Idle and boot time are fleet overhead,
reported per hour by the workers' ``OverheadSeconds`` metric, never spread over jobs.

``job_cost`` sums the entries into the public ``cost`` field: ``{gpu_seconds, usd, breakdown}``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

PHASES = ("model_load", "inference", "encode", "upload", "other")
ATTEMPT_COSTS = "attempt_costs"  # the record's list of entries


def dollars(gpu_seconds: float, hourly_usd: float) -> float:
    """What ``gpu_seconds`` cost at ``hourly_usd`` (rounded to a millionth of a dollar)."""
    return round(float(gpu_seconds) * float(hourly_usd) / 3600.0, 6)


def attempt_entry(*, attempt: int, lease: int, outcome: str, gpu_seconds: float, phases: Mapping[str, float],
                  instance_type: str, purchase_option: str, hourly_usd: float, price_source: str) -> dict[str, Any]:
    """One attempt's entry; ``phases`` in seconds, any phase not given is 0 and ``other`` takes the rest."""
    total = max(0.0, float(gpu_seconds))
    split = {p: round(max(0.0, float(phases.get(p, 0.0))), 3) for p in PHASES if p != "other"}
    split["other"] = round(max(0.0, total - sum(split.values())), 3)
    return {"attempt": int(attempt), "lease": int(lease), "outcome": str(outcome),
            "instance_type": instance_type, "purchase_option": purchase_option,
            "hourly_usd": float(hourly_usd), "price_source": price_source,
            "gpu_seconds": round(total, 3), "usd": dollars(total, hourly_usd), "phases": split}


def job_cost(entries: Iterable[Mapping[str, Any]] | None) -> dict[str, Any]:
    """The public ``cost`` of a job from its ``attempt_costs``: totals, and a breakdown by phase and attempt."""
    entries = list(entries or [])
    phases = {p: round(sum(float((e.get("phases") or {}).get(p, 0.0)) for e in entries), 3) for p in PHASES}
    attempts = [{"attempt": int(e.get("attempt", 0)), "outcome": e.get("outcome"),
                 "instance_type": e.get("instance_type"), "purchase_option": e.get("purchase_option"),
                 "hourly_usd": float(e.get("hourly_usd", 0.0)), "price_source": e.get("price_source"),
                 "gpu_seconds": float(e.get("gpu_seconds", 0.0)), "usd": float(e.get("usd", 0.0))}
                for e in entries]
    return {"gpu_seconds": round(sum(a["gpu_seconds"] for a in attempts), 3),
            "usd": round(sum(a["usd"] for a in attempts), 6),
            "breakdown": {"phases": phases, "attempts": attempts}}
