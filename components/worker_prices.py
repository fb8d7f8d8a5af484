"""The prices the stack publishes to its workers (agent config ``pricing``): the preview's own table.

``policies/prices.json`` is the one price table of the project (the policy pack's budget check, ``make preview``'s
estimate, the planner); the workers get its on-demand prices for the fleet's instance types in the stack's region,
and its spot discounts (the fallback when a spot price cannot be read), with its ``retrieved`` date as the source.
Read as a file, not through the policy pack's module: the Pulumi program does not install ``pulumi_policy``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

PRICES_FILE = Path(__file__).resolve().parent.parent / "policies" / "prices.json"


@cache
def _table(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def published_prices(region: str, instance_types: Iterable[str], path: Path = PRICES_FILE) -> dict[str, Any]:
    """The agent config's ``pricing`` block for these instance types in ``region``.

    Raises ``ValueError`` naming the type and region when the table has no price: a worker must not run
    unpriced (add the price to ``policies/prices.json`` or pick another instance type)."""
    table = _table(str(path))
    hourly = table["ec2OnDemandHourly"].get(region, {})
    types = sorted(set(instance_types))
    missing = [t for t in types if t not in hourly]
    if missing:
        raise ValueError(f"policies/prices.json has no {region} on-demand price for {', '.join(missing)}: add it "
                         "(AWS's on-demand pricing page) or pick another instance type")
    families = {t.split(".")[0] for t in types}
    discount = {f: float(v) for f, v in table["spotDiscount"].items() if f in families}
    return {"on_demand_hourly": {t: float(hourly[t]) for t in types}, "spot_discount": discount,
            "source": f"policies/prices.json retrieved {table.get('retrieved', '?')}, {region}"}
