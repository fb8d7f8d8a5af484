"""Typed, validated stack settings read from Pulumi config.

Every setting of the stack is declared once in ``SETTINGS`` (components/config_settings.py: key, type,
default, rule, help); the checks are in components/config_rules.py.
``load`` turns raw config values into a frozen ``FleetConfig`` and fails *before any resource is
declared* with one ``ConfigError`` listing every bad value: the key, the value given and what is
allowed. The README's configuration reference and ``Pulumi.yaml``'s config block are checked
against ``SETTINGS`` by a test, so docs cannot drift from code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components import capacity
from components.config_rules import RULES, read_values
from components.config_settings import (
    DEFAULT_BACKEND,
    DEFAULT_INSTANCE_TYPES,
    ENV_NAME_PATTERN,
    NAMESPACE,
    REGION_PATTERN,
    SETTINGS,
    SETTINGS_BY_KEY,
    ami_parameter_name,
)
from runtime.jobs.time_limits import longest_time_limit, parse_task_limits


class ConfigError(ValueError):
    """One or more stack settings are invalid; ``problems`` holds one message per bad value."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Tags:
    project: str
    environment: str
    owner: str
    cost_center: str

    def as_dict(self) -> dict[str, str]:
        """Provider default tags: every taggable resource carries these."""
        return {"Project": self.project, "Environment": self.environment, "Owner": self.owner,
                "CostCenter": self.cost_center}


@dataclass(frozen=True)
class ClusterSettings:
    flavor: str
    ami_id: str | None
    instance_types: tuple[str, ...]
    min_size: int
    max_size: int
    on_demand_base: int
    spot_share: float
    spot_allocation_strategy: str
    warm_pool_size: int
    backend: str
    hot_models: tuple[str, ...]
    average_job_seconds: float
    acceptable_wait_seconds: float
    gpu_utilization_target: int | None
    ami_channel: str = "latest"

    @property
    def ami_parameter(self) -> str:
        """SSM parameter holding the AMI id: ``make ami`` writes ``latest``, ``make promote-ami`` the others."""
        return ami_parameter_name(self.flavor, self.ami_channel)

    @property
    def backlog_per_instance_target(self) -> float:
        """AWS's SQS scaling guide: acceptable backlog per instance = acceptable latency / job time."""
        return round(self.acceptable_wait_seconds / self.average_job_seconds, 2)

    @property
    def spot_max_size(self) -> int:
        """Upper bound of the mixed (spot) group: what the on-demand base group does not take."""
        return self.max_size - self.on_demand_base


LEASE_SECONDS = 30
HANDBACK_ALLOWANCE = 5


@dataclass(frozen=True)
class QueueSettings:
    kind: str
    max_receive_count: int
    max_job_seconds: int
    model_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group, model ids): a queue per group
    task_max_job_seconds: tuple[tuple[str, int], ...] = ()  # (task, seconds): tasks with a limit of their own

    @property
    def longest_job_seconds(self) -> int:
        """The longest any job may run (maxJobSeconds or a task's own): what drain timeouts must outlast."""
        return int(longest_time_limit(self.max_job_seconds, dict(self.task_max_job_seconds)))

    @property
    def visibility_timeout_seconds(self) -> int:
        """The lease: short, renewed by the agent's heartbeat every third of it, so a dead worker's job
        is retried within a minute whatever the job time limit (runtime.jobs.attempts)."""
        return LEASE_SECONDS

    @property
    def redrive_receive_count(self) -> int:
        """SQS receives before the DLQ: the record counts attempts (maxReceiveCount); hand-backs and
        crashed receives also use up receives, so redrive leaves room for them. The DLQ consumer makes
        whatever lands there final."""
        return self.max_receive_count + HANDBACK_ALLOWANCE


@dataclass(frozen=True)
class StorageSettings:
    output_retention_days: int
    log_retention_days: int
    point_in_time_recovery: bool


@dataclass(frozen=True)
class OutputAccessSettings:
    """Issue 43: how outputs are served (``outputAccess``) and signed."""

    access: str = "signed"  # signed | public
    url_ttl_seconds: int = 3600
    signing_keys: tuple[str, ...] = ("k1",)  # the key group (two during a rotation)
    signing_key: str = "k1"  # the one the API and the webhook sender sign with
    public_reason: str | None = None

    @property
    def signed(self) -> bool:
        return self.access == "signed"


@dataclass(frozen=True)
class ApiSettings:
    auth: str
    rate_limit: int
    burst_limit: int
    key_quota_per_day: int | None
    max_wait_seconds: int = 20
    tenant_budget_usd_per_day: float | None = None  # runtime.jobs.spend
    handler_concurrency: int | None = None
    authorizer_concurrency: int | None = None

    @property
    def reserved_handler(self) -> int:
        """Reserved concurrency of the API function (explicit, else what rate, burst and wait need)."""
        return self.handler_concurrency or capacity.handler_needed(self.rate_limit, self.burst_limit,
                                                                   self.max_wait_seconds)

    @property
    def reserved_authorizer(self) -> int | None:
        """Reserved concurrency of the authorizer; ``None`` when there is none (apiAuth iam)."""
        if self.auth != "api-key":
            return None
        return self.authorizer_concurrency or capacity.authorizer_needed(self.burst_limit)

    @property
    def account_concurrency_needed(self) -> int:
        return capacity.account_needed(self.reserved_handler, self.reserved_authorizer)


@dataclass(frozen=True)
class NetworkSettings:
    nat_gateways: str
    vpc_cidr: str
    availability_zone_count: int
    existing_vpc_id: str | None
    existing_private_subnet_ids: tuple[str, ...]


@dataclass(frozen=True)
class MonitoringSettings:
    alarms_enabled: bool
    alarm_email: str | None


@dataclass(frozen=True)
class StackIdentity:
    """Which stack a component belongs to: physical names, ARNs and production safety derive from it."""

    stack: str
    region: str
    environment: str

    @property
    def is_production(self) -> bool:
        """Production stacks keep their data on destroy (deletion protection, no force-destroy)."""
        return self.environment.startswith("prod")

    def resource_prefix(self) -> str:
        """Short prefix for physical names (buckets add a random suffix of their own)."""
        return f"genai-{self.environment}"


@dataclass(frozen=True)
class FleetConfig:
    """Everything the program needs, validated. Build with ``load`` or ``from_pulumi``."""

    stack: str
    region: str
    tags: Tags
    cluster: ClusterSettings
    queue: QueueSettings
    storage: StorageSettings
    api: ApiSettings
    network: NetworkSettings
    monitoring: MonitoringSettings
    monthly_budget_usd: float
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    outputs: OutputAccessSettings = OutputAccessSettings()  # issue 43

    @property
    def environment(self) -> str:
        return self.tags.environment

    @property
    def identity(self) -> StackIdentity:
        """The slice every component takes: stack, region, environment (names and production safety)."""
        return StackIdentity(stack=self.stack, region=self.region, environment=self.environment)

    @property
    def is_production(self) -> bool:
        return self.identity.is_production

    def resource_prefix(self) -> str:
        """Short prefix for physical names (buckets add a random suffix of their own)."""
        return self.identity.resource_prefix()


def load(values: Mapping[str, Any], stack: str, region: str | None = None) -> FleetConfig:
    """Validate raw settings (keys without the namespace) and build the typed config."""
    problems: list[str] = []
    if region is None or region == "":
        region = "us-east-1"
    if not REGION_PATTERN.match(region):
        problems.append(f"aws:region = {region!r}: must be an AWS region name like us-east-1")
    v = read_values(values, problems)
    v["_invalid"] = {s.key for s in SETTINGS if values.get(s.key) is not None and v[s.key] is None}
    flavor = v["amiFlavor"]
    if flavor is not None:
        if v["instanceTypes"] is None and "instanceTypes" not in v["_invalid"]:
            v["instanceTypes"] = DEFAULT_INSTANCE_TYPES[flavor]
        if v["backend"] is None and "backend" not in v["_invalid"]:
            v["backend"] = DEFAULT_BACKEND[flavor]
    environment = v["environment"] or stack
    if v["environment"] is None and "environment" not in v["_invalid"] and not ENV_NAME_PATTERN.match(stack):
        problems.append(f"stack name {stack!r} cannot be the environment name: set {NAMESPACE}:environment "
                        f"(2-16 characters: lowercase letters, digits, '-', starting with a letter)")
    for check in (*RULES, capacity.check):
        problems.extend(check(v))
    if problems:
        raise ConfigError(problems)
    return FleetConfig(
        stack=stack,
        region=region,
        tags=Tags(project=NAMESPACE, environment=environment, owner=v["owner"], cost_center=v["costCenter"]),
        cluster=ClusterSettings(
            flavor=flavor, ami_id=v["amiId"], instance_types=tuple(v["instanceTypes"]), min_size=v["minSize"],
            max_size=v["maxSize"], on_demand_base=v["onDemandBase"], spot_share=v["spotShare"],
            spot_allocation_strategy=v["spotAllocationStrategy"], warm_pool_size=v["warmPoolSize"],
            backend=v["backend"], hot_models=tuple(v["hotModels"]),
            average_job_seconds=v["averageJobSeconds"], acceptable_wait_seconds=v["acceptableWaitSeconds"],
            gpu_utilization_target=v["gpuUtilizationTarget"],
            ami_channel=v["amiChannel"] or ("latest" if not environment.startswith("prod") else environment)),
        queue=QueueSettings(kind=v["queueKind"], max_receive_count=v["maxReceiveCount"],
                            max_job_seconds=v["maxJobSeconds"],
                            model_groups=tuple((g, tuple(ms)) for g, ms in (v["modelGroups"] or {}).items()),
                            task_max_job_seconds=tuple(sorted(parse_task_limits(
                                v["taskMaxJobSeconds"], f"{NAMESPACE}:taskMaxJobSeconds").items()))),
        storage=StorageSettings(output_retention_days=v["outputRetentionDays"],
                                log_retention_days=v["logRetentionDays"],
                                point_in_time_recovery=v["pointInTimeRecovery"]),
        api=ApiSettings(auth=v["apiAuth"], rate_limit=v["apiRateLimit"], burst_limit=v["apiBurstLimit"],
                        key_quota_per_day=v["apiKeyQuotaPerDay"], max_wait_seconds=v["apiMaxWaitSeconds"],
                        tenant_budget_usd_per_day=v["apiTenantBudgetUsdPerDay"],
                        handler_concurrency=v["apiHandlerConcurrency"],
                        authorizer_concurrency=v["apiAuthorizerConcurrency"]),
        network=NetworkSettings(nat_gateways=v["natGateways"], vpc_cidr=v["vpcCidr"],
                                availability_zone_count=v["availabilityZoneCount"],
                                existing_vpc_id=v["existingVpcId"],
                                existing_private_subnet_ids=tuple(v["existingPrivateSubnetIds"])),
        monitoring=MonitoringSettings(alarms_enabled=v["alarmsEnabled"], alarm_email=v["alarmEmail"]),
        monthly_budget_usd=v["monthlyBudgetUsd"],
        raw=dict(values),
        outputs=_output_access(v),
    )


def _output_access(v: Mapping[str, Any]) -> OutputAccessSettings:
    """Issue 43: the validated output access settings (the active key defaults to the newest)."""
    keys = tuple(v["outputSigningKeys"])
    return OutputAccessSettings(access=v["outputAccess"], url_ttl_seconds=v["outputUrlTtlSeconds"],
                                signing_keys=keys, signing_key=v["outputSigningKey"] or keys[-1],
                                public_reason=v["outputPublicReason"])


def from_pulumi() -> FleetConfig:
    """Read the current stack's config. Call before declaring any resource."""
    import pulumi

    cfg = pulumi.Config(NAMESPACE)
    values = {s.key: cfg.get(s.key) for s in SETTINGS if cfg.get(s.key) is not None}
    # Keys set in the stack file but unknown to SETTINGS are reported too (typos must not pass silently).
    values.update({k: v for k, v in _namespace_values().items() if k not in SETTINGS_BY_KEY})
    region = pulumi.Config("aws").get("region")
    return load(values, stack=pulumi.get_stack(), region=region)


def _namespace_values() -> dict[str, str]:
    """All keys of our namespace, whether the engine passed them by environment or they were set in code."""
    from pulumi.runtime import config as runtime_config

    prefix = NAMESPACE + ":"
    merged = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    return {k[len(prefix):]: v for k, v in merged.items() if k.startswith(prefix)}
