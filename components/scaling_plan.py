"""The fleet's sizing and scaling arithmetic, as plain Python: one source for the stack and the planner.

``fleet_plan(cfg.cluster, cfg.queue)`` turns the cluster settings into what the inference cluster declares (group sizes,
market split, warm pool, lifecycle hooks, target value, the zero-to-one threshold) and what the
capacity planner (``planner/``) simulates. The Pulumi components read their numbers from here, so the
planner cannot drift from the stack. Nothing here imports Pulumi.

How the deployed policies act (EC2 Auto Scaling target tracking; AWS does not publish the exact
algorithm, so this follows its documented behaviour and the alarms it creates, visible in CloudWatch):

- The metric is backlog per InService instance (metric math over 1-minute data). Target tracking owns
  two alarms: a *high* alarm that fires when the last ``HIGH_ALARM_DATAPOINTS`` (3) one-minute
  datapoints are above the target, and a *low* alarm that fires when the last ``LOW_ALARM_DATAPOINTS``
  (15) are below ``LOW_ALARM_RATIO`` (90 %) of it ("scales in only when the metric is usually more
  than 10 % below the target", Application Auto Scaling user guide, target tracking overview).
- It acts in proportion: the capacity that would bring the metric to the target is
  ``ceil(capacity * metric / target)``, where capacity is the group's InService instances (pending ones
  are not in the metric yet). Scale-out uses the latest datapoint. AWS calls scale-in conservative
  without saying by how much; the model removes only what keeps the *highest* of the low alarm's
  datapoints at the target, so one noisy low datapoint cannot empty the group. Scale-out only raises
  the desired capacity, scale-in only lowers it, never past min/max.
- With the optional utilisation target as well, each policy proposes a capacity; the group scales out
  when either asks and in only when both agree (``combine``), as EC2 Auto Scaling does with several
  target tracking policies on one group.
- The zero-to-one step alarm evaluates one 1-minute period and adds one instance while the group wants
  none and the backlog reaches ``from_zero_threshold``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from components.config import ClusterSettings, QueueSettings

LAUNCHING_HOOK = "genai-launching"
TERMINATING_HOOK = "genai-terminating"
MAX_HEARTBEAT_SECONDS = 7200  # Auto Scaling's limit for a lifecycle hook's heartbeat timeout
BOOT_SECONDS = 600  # boot, backend start and checks before hot models load
PRELOAD_SECONDS_PER_MODEL = 180  # one hot model from S3 to local disk and into the backend
DRAIN_MARGIN_SECONDS = 120  # upload, record update and handing back after the longest job
METRIC_PERIOD = 60
HEALTH_CHECK_GRACE_SECONDS = 120  # counted once the launching hook completes (instance InService)
INSTANCE_WARMUP_SECONDS = 60  # InService already means ready; metrics settle within a minute
HIGH_ALARM_DATAPOINTS = 3  # target tracking's scale-out alarm: 3 of 3 one-minute datapoints
LOW_ALARM_DATAPOINTS = 15  # its scale-in alarm: 15 of 15 one-minute datapoints
LOW_ALARM_RATIO = 0.9  # ... below 90 % of the target
FROM_ZERO_EVALUATION_PERIODS = 1
FROM_ZERO_STEP = 1  # instances the step policy adds
SPOT_NOTICE_SECONDS = 120  # EC2 spot interruption notice


def launching_heartbeat(cluster: ClusterSettings) -> int:
    return min(MAX_HEARTBEAT_SECONDS, BOOT_SECONDS + PRELOAD_SECONDS_PER_MODEL * len(cluster.hot_models))


def terminating_heartbeat(queue: QueueSettings) -> int:
    return min(MAX_HEARTBEAT_SECONDS, queue.longest_job_seconds + DRAIN_MARGIN_SECONDS)


def on_demand_percentage(spot_share: float) -> int:
    """Percent of capacity above the base that runs on demand."""
    return round((1 - spot_share) * 100)


def scale_from_zero_threshold(cluster: ClusterSettings) -> int:
    """Backlog at which the spot group leaves zero: any job, or more than the on-demand base absorbs."""
    base = cluster.on_demand_base
    return max(1, math.ceil(cluster.backlog_per_instance_target * base)) if base else 1


@dataclass(frozen=True)
class GroupPlan:
    """One Auto Scaling group as declared: sizes, market split, warm pool, whether policies scale it."""

    suffix: str  # the group's name is f"{cluster name}-{suffix}"
    min_size: int
    max_size: int
    desired_capacity: int | None  # None: the scaling policies own it
    instance_types: tuple[str, ...]  # in order of preference
    mixed: bool  # mixed instances policy (spot + on demand above base)
    on_demand_percent: int  # of capacity above the (zero) base, mixed groups only
    warm_pool_size: int = 0
    warm_pool_max_prepared: int | None = None
    capacity_rebalance: bool = False

    @property
    def scaled(self) -> bool:
        return self.desired_capacity is None


@dataclass(frozen=True)
class FleetPlan:
    """Everything the cluster declares about sizes and scaling, derived from the stack config once."""

    groups: tuple[GroupPlan, ...]
    target: float  # backlog per InService instance
    from_zero_threshold: int
    launching_heartbeat: int
    terminating_heartbeat: int
    gpu_utilization_target: int | None
    metric_period: int = METRIC_PERIOD
    instance_warmup: int = INSTANCE_WARMUP_SECONDS
    health_check_grace: int = HEALTH_CHECK_GRACE_SECONDS

    @property
    def spot(self) -> GroupPlan:
        return self.groups[0]

    @property
    def on_demand(self) -> GroupPlan | None:
        return self.groups[1] if len(self.groups) > 1 else None

    @property
    def has_scaling_policies(self) -> bool:
        return self.spot.max_size > 0


def fleet_plan(cluster: ClusterSettings, queue: QueueSettings) -> FleetPlan:
    """Group sizes, targets and hook heartbeats from the cluster settings and the queue's job time limit."""
    c = cluster
    spot = GroupPlan(suffix="spot", min_size=max(0, c.min_size - c.on_demand_base), max_size=c.spot_max_size,
                     desired_capacity=None, instance_types=c.instance_types, mixed=True,
                     on_demand_percent=on_demand_percentage(c.spot_share), capacity_rebalance=True)
    groups = [spot]
    if c.on_demand_base > 0:
        groups.append(GroupPlan(
            suffix="ondemand", min_size=c.on_demand_base, max_size=c.on_demand_base,
            desired_capacity=c.on_demand_base, instance_types=c.instance_types[:1], mixed=False,
            on_demand_percent=100, warm_pool_size=c.warm_pool_size,
            warm_pool_max_prepared=c.on_demand_base + c.warm_pool_size if c.warm_pool_size else None))
    return FleetPlan(groups=tuple(groups), target=c.backlog_per_instance_target,
                     from_zero_threshold=scale_from_zero_threshold(c),
                     launching_heartbeat=launching_heartbeat(c), terminating_heartbeat=terminating_heartbeat(queue),
                     gpu_utilization_target=c.gpu_utilization_target)


# --- how the policies decide (used by the planner; the stack declares the policies above) -------------
def proportional_capacity(capacity: int, metric: float, target: float) -> int:
    """Capacity that brings a metric inversely proportional to capacity back to the target."""
    return math.ceil(capacity * metric / target - 1e-9)


class TargetTracker:
    """Target tracking on one group: its two alarms over 1-minute datapoints and the proportional step."""

    def __init__(self, target: float, min_size: int, max_size: int):
        self.target, self.min_size, self.max_size = target, min_size, max_size
        self._above = 0  # consecutive datapoints above the target
        self._below = 0  # consecutive datapoints below LOW_ALARM_RATIO x target
        self._low_window: list[float] = []  # the values of that run, newest last

    def observe(self, metric: float | None, in_service: int, desired: int) -> int:
        """Feed one datapoint (None: no data, e.g. nothing InService); return the new desired capacity."""
        if metric is None:
            self._above = self._below = 0  # missing data breaks a run of datapoints
            self._low_window.clear()
            return desired
        self._above = self._above + 1 if metric > self.target else 0
        if metric < LOW_ALARM_RATIO * self.target:
            self._below += 1
            self._low_window = [*self._low_window[-(LOW_ALARM_DATAPOINTS - 1):], metric]
        else:
            self._below = 0
            self._low_window.clear()
        if self._above >= HIGH_ALARM_DATAPOINTS:
            wanted = self._clamp(proportional_capacity(in_service, metric, self.target))
            return max(desired, wanted)
        if self._below >= LOW_ALARM_DATAPOINTS:
            wanted = self._clamp(proportional_capacity(in_service, max(self._low_window), self.target))
            return min(desired, wanted)
        return desired

    def _clamp(self, capacity: int) -> int:
        return min(self.max_size, max(self.min_size, capacity))


def combine(desired: int, proposals: list[int]) -> int:
    """Several target tracking policies on one group: out when any asks (largest), in only when all ask."""
    if any(p > desired for p in proposals):
        return max(proposals)
    if proposals and all(p < desired for p in proposals):
        return max(proposals)
    return desired


def from_zero_adjustment(backlog_max: float, desired: int, threshold: int) -> int:
    """The step policy's change: ``FROM_ZERO_STEP`` while the group wants 0 and the backlog reaches threshold."""
    return FROM_ZERO_STEP if desired == 0 and backlog_max >= threshold else 0
