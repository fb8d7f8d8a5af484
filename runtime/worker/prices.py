"""What this instance costs per hour, and where the number comes from: the price a job's cost is computed with.

Sources, and how stale each may be::

    instance type       IMDS ``instance-type``, read once at boot (it never changes on a running instance)
    purchase option     IMDS ``instance-life-cycle``: ``spot`` is priced as spot; anything else ("on-demand",
                        "scheduled", ...) at the on-demand price (a Savings Plan or reservation is a billing
                        discount the instance cannot see)
    on-demand price     the agent config's ``pricing.on_demand_hourly``: the stack publishes the preview's table
                        (``policies/prices.json``, its ``retrieved`` date in ``pricing.source``) for the fleet's
                        instance types in its region; as stale as that table (refreshed by hand, see README)
    spot price          EC2 ``DescribeSpotPriceHistory`` for this type in this instance's availability zone
                        (IMDS ``placement/availability-zone``), read at boot and then every
                        ``pricing.spot_refresh_seconds`` (default 3600) off the job path: at most that old. When
                        the call fails, the last price read is kept; with none yet, the on-demand price times
                        (1 - the table's spot discount for the family), labelled ``estimate``

``PriceSource.current()`` never calls AWS: a settle reads the price held in memory.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

SPOT, ON_DEMAND = "spot", "on-demand"
SPOT_PRODUCT = "Linux/UNIX"  # the AMIs are Linux; DescribeSpotPriceHistory's ProductDescriptions value


@dataclass(frozen=True)
class Price:
    """This instance's hourly price and its provenance (``source`` says where and when it was read)."""

    instance_type: str
    purchase_option: str  # spot | on-demand
    hourly_usd: float
    source: str
    read_at: float  # epoch seconds the number was read (a table: when the agent loaded its config)


@dataclass(frozen=True)
class InstanceFacts:
    instance_type: str
    purchase_option: str
    availability_zone: str | None = None


def instance_facts(imds: Any, instance_type: str | None = None, purchase_option: str | None = None) -> InstanceFacts:
    """The instance's type, purchase option and zone from IMDS (``imds`` may be None: then the given values, or
    ``unknown`` / on-demand). Values given override IMDS (local mode without a fake IMDS)."""
    def read(path: str) -> str | None:
        if imds is None:
            return None
        try:
            return imds.get(path)
        except Exception as exc:  # noqa: BLE001 - an IMDS hiccup leaves the fact unknown, never the agent down
            log.warning("IMDS %s unavailable (%s)", path, exc)
            return None

    itype = instance_type or read("instance-type") or "unknown"
    life_cycle = purchase_option or read("instance-life-cycle") or ON_DEMAND
    return InstanceFacts(itype, SPOT if life_cycle == SPOT else ON_DEMAND, read("placement/availability-zone"))


class PriceSource:
    """The hourly price of this instance (``current()``); ``refresh()`` re-reads the spot price."""

    def __init__(self, facts: InstanceFacts, *, on_demand_hourly: Mapping[str, float], table_source: str,
                 spot_discount: Mapping[str, float] | None = None, ec2: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.facts, self._ec2, self._clock = facts, ec2, clock
        self._table_source = table_source
        on_demand = on_demand_hourly.get(facts.instance_type)
        self._on_demand = float(on_demand) if on_demand is not None else None
        self._discount = float((spot_discount or {}).get(facts.instance_type.split(".")[0], 0.0))
        self._lock = threading.Lock()
        self._price = self._table_price()

    def current(self) -> Price:
        with self._lock:
            return self._price

    def _table_price(self) -> Price:
        f = self.facts
        if self._on_demand is None:
            return Price(f.instance_type, f.purchase_option, 0.0,
                         f"no price for {f.instance_type} in the agent config's pricing.on_demand_hourly "
                         f"({self._table_source}): cost shows 0 USD", self._clock())
        if f.purchase_option == SPOT:
            return Price(f.instance_type, SPOT, round(self._on_demand * (1.0 - self._discount), 6),
                         f"estimate: on-demand x (1 - {self._discount:g} spot discount), {self._table_source}",
                         self._clock())
        return Price(f.instance_type, ON_DEMAND, self._on_demand, f"on-demand table, {self._table_source}",
                     self._clock())

    def refresh(self) -> Price:
        """Read the spot price (spot instances with an EC2 client only); keeps the last price on failure."""
        f = self.facts
        if f.purchase_option != SPOT or self._ec2 is None:
            return self.current()
        try:
            price = self._read_spot()
        except Exception as exc:  # noqa: BLE001 - the price in hand stays; the next refresh tries again
            log.warning("spot price of %s not read (%s); keeping: %s", f.instance_type, exc, self.current().source)
            return self.current()
        if price is not None:
            with self._lock:
                self._price = price
        return self.current()

    def _read_spot(self) -> Price | None:
        f = self.facts
        now = self._clock()
        kwargs: dict[str, Any] = {"InstanceTypes": [f.instance_type], "ProductDescriptions": [SPOT_PRODUCT],
                                  "StartTime": dt.datetime.fromtimestamp(now, dt.UTC), "MaxResults": 20}
        if f.availability_zone:
            kwargs["AvailabilityZone"] = f.availability_zone
        history = self._ec2.describe_spot_price_history(**kwargs).get("SpotPriceHistory") or []
        history = [h for h in history if h.get("InstanceType") == f.instance_type and h.get("SpotPrice")]
        if f.availability_zone:
            history = [h for h in history if h.get("AvailabilityZone") == f.availability_zone] or history
        if not history:
            log.warning("no spot price history for %s in %s", f.instance_type, f.availability_zone or "the region")
            return None
        newest = max(history, key=lambda h: str(h.get("Timestamp") or ""))
        return Price(f.instance_type, SPOT, float(newest["SpotPrice"]),
                     f"spot price history {newest.get('AvailabilityZone') or f.availability_zone} "
                     f"at {newest.get('Timestamp')}, read {_iso(now)}", now)


class SpotPriceRefresher:
    """Refreshes a ``PriceSource`` every ``interval`` seconds on a daemon thread, off the job path."""

    def __init__(self, source: PriceSource, interval: float) -> None:
        self._source, self._interval = source, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="spot-price", daemon=True)

    def start(self) -> SpotPriceRefresher:
        if self._source.facts.purchase_option == SPOT:
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._source.refresh()

    def stop(self) -> None:
        self._stop.set()


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
