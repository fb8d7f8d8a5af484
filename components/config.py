"""Typed, validated stack settings read from Pulumi config.

Every setting of the stack is declared once in ``SETTINGS`` (key, type, default, rule, help).
``load`` turns raw config values into a frozen ``FleetConfig`` and fails *before any resource is
declared* with one ``ConfigError`` listing every bad value: the key, the value given and what is
allowed. The README's configuration reference and ``Pulumi.yaml``'s config block are checked
against ``SETTINGS`` by a test, so docs cannot drift from code.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from components import capacity

NAMESPACE = "genai-fleet"

# Instance families per AMI flavour. The CUDA AMI is x86_64 with NVIDIA drivers; the Neuron AMI
# runs on Inferentia2 / Trainium. g5g (Graviton + T4G) is left out: the CUDA AMI is x86_64 only.
FLAVOR_FAMILIES: dict[str, tuple[str, ...]] = {
    "cuda": ("g4dn", "g5", "g6", "g6e", "gr6", "p3", "p4d", "p4de", "p5", "p5e"),
    "neuron": ("inf2", "trn1", "trn1n"),
}
DEFAULT_INSTANCE_TYPES: dict[str, tuple[str, ...]] = {
    "cuda": ("g6.xlarge", "g5.xlarge", "g6.2xlarge", "g5.2xlarge"),
    "neuron": ("inf2.xlarge", "inf2.8xlarge"),
}
FLAVOR_BACKENDS: dict[str, tuple[str, ...]] = {
    "cuda": ("comfyui", "a1111", "diffusers", "test-pattern"),
    "neuron": ("neuron", "test-pattern"),
}
DEFAULT_BACKEND: dict[str, str] = {"cuda": "comfyui", "neuron": "neuron"}
# Settings that were removed; setting one fails with the message saying why.
REMOVED = {
    "privateOutputs": "signed output URLs are not implemented (nothing signs the URLs the API and workers return), "
                      "so the option was removed: remove it from the stack file",
    "outputsSigningPublicKey": "it belonged to privateOutputs, which was removed: remove it from the stack file",
}
# Settings that were replaced; setting one fails with the message naming the new key.
REPLACED = {"backends": "backend: each instance runs exactly one backend (the AMI installs it), so set one, "
                        "e.g. genai-fleet:backend: comfyui"}
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)

_INSTANCE_TYPE = re.compile(r"^([a-z][a-z0-9-]*)\.([0-9a-z]+)$")
_MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?$")
_REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
_ENV_NAME = re.compile(r"^[a-z][a-z0-9-]{1,15}$")


class ConfigError(ValueError):
    """One or more stack settings are invalid; ``problems`` holds one message per bad value."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid stack configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Setting:
    """One config key: how to read it, its default and the rule its value must satisfy."""

    key: str
    kind: str  # str | int | float | bool | list
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    pattern: re.Pattern[str] | None = None
    pattern_help: str = ""

    @property
    def full_key(self) -> str:
        return f"{NAMESPACE}:{self.key}"


def _s(key, kind, default, help, **rule) -> Setting:  # noqa: A002 - mirrors Setting's field name
    return Setting(key=key, kind=kind, default=default, help=help, **rule)


# Defaults of None mean "derived" (from the stack name or the flavour) or "off"; see help.
SETTINGS: tuple[Setting, ...] = (
    _s("environment", "str", None, "Environment name used in tags and resource names; defaults to the stack name.",
       pattern=_ENV_NAME, pattern_help="2-16 characters: lowercase letters, digits, '-', starting with a letter"),
    _s("owner", "str", None, "Owner tag (team or person answerable for the stack). Required.",
       pattern=re.compile(r"^\S.{0,127}$"), pattern_help="1-128 characters"),
    _s("costCenter", "str", None, "CostCenter tag used by billing reports. Required.",
       pattern=re.compile(r"^\S.{0,127}$"), pattern_help="1-128 characters"),
    _s("amiFlavor", "str", "cuda", "AMI and instance family: NVIDIA GPUs (cuda) or AWS Inferentia2 (neuron).",
       choices=("cuda", "neuron")),
    _s("amiId", "str", None, "Pin an AMI id instead of reading it from the stack's AMI channel (amiChannel).",
       pattern=re.compile(r"^ami-[0-9a-f]{8,17}$"), pattern_help="an AMI id like ami-0123456789abcdef0"),
    _s("amiChannel", "str", None, "SSM channel the AMI id is read from, /genai-fleet/ami/<flavour>/<channel>: "
       "defaults to latest (what `make ami` publishes after its checks) outside production and to the "
       "environment name in production (set by `make promote-ami`).",
       pattern=re.compile(r"^[a-z][a-z0-9-]{1,31}$"),
       pattern_help="2-32 characters: lowercase letters, digits, '-', starting with a letter"),
    _s("instanceTypes", "list", None, "Instance types for the fleet, in order of preference; defaults per flavour "
       "(cuda: g6.xlarge, g5.xlarge, g6.2xlarge, g5.2xlarge; neuron: inf2.xlarge, inf2.8xlarge)."),
    _s("minSize", "int", 0, "Smallest number of instances (0 lets the fleet scale to zero).", minimum=0, maximum=1000),
    _s("maxSize", "int", 4, "Largest number of instances across spot and on-demand groups.", minimum=1, maximum=1000),
    _s("onDemandBase", "int", 0, "Instances in the on-demand base group (never interrupted; may have a warm pool).",
       minimum=0, maximum=1000),
    _s("spotShare", "float", 1.0, "Share of capacity above the on-demand base that runs on spot (0.0-1.0).",
       minimum=0.0, maximum=1.0),
    _s("spotAllocationStrategy", "str", "price-capacity-optimized", "How EC2 picks spot pools.",
       choices=("price-capacity-optimized", "capacity-optimized")),
    _s("warmPoolSize", "int", 0, "Stopped, pre-initialised instances kept for the on-demand base group.",
       minimum=0, maximum=100),
    _s("queueKind", "str", "sqs", "Request queue: SQS standard queue with DLQ, or Kafka on MSK Serverless.",
       choices=("sqs", "kafka")),
    _s("maxReceiveCount", "int", 3, "Attempts per job before it goes to the dead-letter queue.", minimum=1, maximum=20),
    _s("backend", "str", None, "The backend every worker runs (one per instance; the AMI must have it installed); "
       "defaults per flavour (cuda: comfyui; neuron: neuron)."),
    _s("hotModels", "list", [], "Model ids every worker preloads before it takes work."),
    _s("modelGroups", "map", {}, "Model affinity (docs/fleet.md): group name -> model ids. Each group gets a queue "
       "of its own (SQS), the API routes a job by its model, and a worker prefers the group of the model it holds; "
       "other models use the main queue. Group names: lowercase letters, digits, '-' (at most 24, not 'default'); "
       "at most 6 groups."),
    _s("maxJobSeconds", "int", 300, "Longest a job may run; drives visibility timeout and lifecycle heartbeats.",
       minimum=10, maximum=3600),
    _s("averageJobSeconds", "float", 3.0, "Typical job duration, used for the backlog-per-instance target.",
       minimum=0.1, maximum=3600),
    _s("acceptableWaitSeconds", "float", 30.0, "Queue wait you accept; target backlog = this / averageJobSeconds.",
       minimum=1, maximum=3600),
    _s("gpuUtilizationTarget", "int", None, "Optional target-tracking on average GPU utilisation (percent).",
       minimum=10, maximum=100),
    _s("outputRetentionDays", "int", 7, "Days generated outputs are kept in the outputs bucket.",
       minimum=1, maximum=3650),
    _s("logRetentionDays", "int", 14, "Days CloudWatch keeps agent, backend and API logs.", choices=LOG_RETENTION_DAYS),
    _s("monthlyBudgetUsd", "float", 1000.0, "Budget the policy pack checks the cost at maximum capacity against.",
       minimum=1, maximum=10_000_000),
    _s("apiAuth", "str", "api-key", "API authentication: hashed API keys (api-key) or AWS SigV4 (iam).",
       choices=("api-key", "iam")),
    _s("apiRateLimit", "int", 100, "Steady-state requests per second the API accepts (stage throttling).",
       minimum=1, maximum=10000),
    _s("apiBurstLimit", "int", 200, "Burst of requests the API accepts above the rate limit.",
       minimum=1, maximum=20000),
    _s("apiKeyQuotaPerDay", "int", None, "Optional jobs per API key per day.", minimum=1, maximum=10_000_000),
    _s("apiMaxWaitSeconds", "int", 20, "Longest `Prefer: wait` the API honours (0 turns sync waits off); a waiting "
       "request holds one Lambda execution.", minimum=0, maximum=25),
    _s("apiHandlerConcurrency", "int", None, "Reserved concurrency of the API function; defaults to what the rate "
       "allows: apiBurstLimit + apiRateLimit x max(apiMaxWaitSeconds, 1).", minimum=1, maximum=100_000),
    _s("apiAuthorizerConcurrency", "int", None, "Reserved concurrency of the API-key authorizer (apiAuth api-key); "
       "defaults to apiBurstLimit.", minimum=1, maximum=100_000),
    _s("pointInTimeRecovery", "bool", False, "Point-in-time recovery on the job table."),
    _s("alarmsEnabled", "bool", False, "Create CloudWatch alarms and their SNS topic."),
    _s("alarmEmail", "str", None, "E-mail address subscribed to the alarm topic.",
       pattern=re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$"), pattern_help="an e-mail address"),
    _s("natGateways", "str", "single", "Worker egress: one NAT gateway (single), one per availability zone (per-az), "
       "or none: workers in public subnets with a public IPv4 each and no inbound rule (no NAT hours while idle; "
       "not with queueKind kafka).", choices=("none", "single", "per-az")),
    _s("vpcCidr", "str", "10.40.0.0/16", "CIDR block of the VPC the stack creates.",
       pattern=re.compile(r"^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}/(1[6-9]|2[0-4])$"),
       pattern_help="an IPv4 CIDR with a prefix length from /16 to /24"),
    _s("availabilityZoneCount", "int", 2, "Availability zones the private subnets span.", minimum=2, maximum=6),
    _s("existingVpcId", "str", None, "Use this VPC instead of creating one (needs existingPrivateSubnetIds).",
       pattern=re.compile(r"^vpc-[0-9a-f]{8,17}$"), pattern_help="a VPC id like vpc-0123456789abcdef0"),
    _s("existingPrivateSubnetIds", "list", [], "Private subnets of existingVpcId, in at least two AZs."),
)
SETTINGS_BY_KEY = {s.key: s for s in SETTINGS}


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
class ApiSettings:
    auth: str
    rate_limit: int
    burst_limit: int
    key_quota_per_day: int | None
    max_wait_seconds: int = 20
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

    @property
    def environment(self) -> str:
        return self.tags.environment

    @property
    def is_production(self) -> bool:
        return self.environment.startswith("prod")

    def resource_prefix(self) -> str:
        """Short prefix for physical names (buckets add a random suffix of their own)."""
        return f"genai-{self.environment}"


def ami_parameter_name(flavor: str, channel: str) -> str:
    return f"/genai-fleet/ami/{flavor}/{channel}"


def _allowed(setting: Setting) -> str:
    if setting.choices is not None:
        return "one of " + ", ".join(str(c) for c in setting.choices)
    if setting.pattern is not None:
        return setting.pattern_help
    if setting.kind in ("int", "float"):
        lo = "" if setting.minimum is None else f"{setting.minimum:g}"
        hi = "" if setting.maximum is None else f"{setting.maximum:g}"
        return f"{'an integer' if setting.kind == 'int' else 'a number'} from {lo} to {hi}"
    if setting.kind == "bool":
        return "true or false"
    if setting.kind == "map":
        return 'an object of group name -> list of model ids, e.g. {"sdxl": ["sdxl-base", "sdxl-turbo"]}'
    return "a list"


def _bad(setting: Setting, value: Any, rule: str | None = None) -> str:
    shown = value if isinstance(value, str) and value and value.strip() == value else json.dumps(value)
    return f"{setting.full_key} = {shown}: must be {rule or _allowed(setting)}"


def _parse_str(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError
    return value.strip()


def _parse_int(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError
    return int(value.strip()) if isinstance(value, str) else int(value)


def _parse_float(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError
    return float(value)


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text not in ("true", "false"):
        raise ValueError
    return text == "true"


def _parse_list(value: Any) -> tuple[str, ...]:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, list | tuple) or not all(isinstance(v, str) for v in parsed):
        raise ValueError
    return tuple(v.strip() for v in parsed)


def _parse_map(value: Any) -> dict[str, tuple[str, ...]]:
    parsed = json.loads(value) if isinstance(value, str) else value
    if not isinstance(parsed, Mapping) or not all(isinstance(k, str) for k in parsed):
        raise ValueError
    return {k: _parse_list(v) for k, v in parsed.items()}


_PARSERS: dict[str, Callable[[Any], Any]] = {"str": _parse_str, "int": _parse_int, "float": _parse_float,
                                             "bool": _parse_bool, "list": _parse_list, "map": _parse_map}


def _coerce(setting: Setting, value: Any, problems: list[str]) -> Any:
    """Turn a raw config value (Pulumi gives strings; structured values as JSON) into its type."""
    try:
        out = _PARSERS[setting.kind](value)
    except (ValueError, TypeError):  # JSONDecodeError is a ValueError
        expected = {"list": "a list of strings, e.g. [\"a\", \"b\"]"}.get(setting.kind, _allowed(setting))
        problems.append(_bad(setting, value, expected))
        return None
    out_of_range = (setting.minimum is not None and out < setting.minimum) or (
        setting.maximum is not None and out > setting.maximum)
    if ((setting.choices is not None and out not in setting.choices) or out_of_range
            or (setting.pattern is not None and not setting.pattern.match(out))):
        problems.append(_bad(setting, value))
        return None
    return out


def _read_all(values: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    unknown = sorted(k for k in values if k not in SETTINGS_BY_KEY)
    for key in unknown:
        if key in REPLACED:
            problems.append(f"{NAMESPACE}:{key} is no longer a setting; use {NAMESPACE}:{REPLACED[key]}")
            continue
        if key in REMOVED:
            problems.append(f"{NAMESPACE}:{key} is no longer a setting: {REMOVED[key]}")
            continue
        close = [s.key for s in SETTINGS if s.key.lower() == key.lower()]
        hint = f"did you mean {NAMESPACE}:{close[0]}?" if close else "see the configuration reference in README.md"
        problems.append(f"{NAMESPACE}:{key} is not a known setting; {hint}")
    out: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = values.get(setting.key)
        if raw is None or (isinstance(raw, str) and raw.strip() == "" and setting.kind != "str"):
            out[setting.key] = setting.default if not isinstance(setting.default, list) else tuple(setting.default)
        else:
            out[setting.key] = _coerce(setting, raw, problems)
    return out


Rule = Callable[[dict[str, Any]], "str | None"]


def _check_instance_types(v: dict[str, Any]) -> list[str]:
    flavor = v["amiFlavor"]
    if flavor is None or v["instanceTypes"] is None:
        return []
    problems = []
    families = FLAVOR_FAMILIES[flavor]
    if not v["instanceTypes"]:
        problems.append(f"{NAMESPACE}:instanceTypes = []: must list at least one instance type")
    for itype in v["instanceTypes"]:
        m = _INSTANCE_TYPE.match(itype)
        if not m or m.group(1) not in families:
            problems.append(f"{NAMESPACE}:instanceTypes contains {itype!r}, which does not fit amiFlavor "
                            f"{flavor!r}: use types of the families {', '.join(families)}")
    if len(set(v["instanceTypes"])) != len(v["instanceTypes"]):
        problems.append(f"{NAMESPACE}:instanceTypes lists a type twice: list each type once")
    return problems


def _check_backends(v: dict[str, Any]) -> list[str]:
    flavor = v["amiFlavor"]
    if flavor is None or v["backend"] is None:
        return []
    allowed = FLAVOR_BACKENDS[flavor]
    if v["backend"] not in allowed:
        return [f"{NAMESPACE}:backend = {v['backend']!r}: amiFlavor {flavor!r} cannot run it; "
                f"use one of {', '.join(allowed)}"]
    return []


def _check_sizes(v: dict[str, Any]) -> list[str]:
    problems = []
    lo, hi, base, warm = v["minSize"], v["maxSize"], v["onDemandBase"], v["warmPoolSize"]
    if lo is not None and hi is not None and hi < lo:
        problems.append(f"{NAMESPACE}:maxSize = {hi} is below {NAMESPACE}:minSize = {lo}: set maxSize >= minSize")
    if base is not None and hi is not None and base > hi:
        problems.append(f"{NAMESPACE}:onDemandBase = {base} is above {NAMESPACE}:maxSize = {hi}: "
                        f"set onDemandBase <= maxSize")
    if warm and base == 0:
        problems.append(f"{NAMESPACE}:warmPoolSize = {warm} needs an on-demand base group: set onDemandBase >= 1 "
                        f"(AWS does not allow warm pools on spot or mixed-instances groups) or warmPoolSize = 0")
    return problems


def _check_job_times(v: dict[str, Any]) -> list[str]:
    avg, longest, wait = v["averageJobSeconds"], v["maxJobSeconds"], v["acceptableWaitSeconds"]
    problems = []
    if avg is not None and longest is not None and avg > longest:
        problems.append(f"{NAMESPACE}:averageJobSeconds = {avg:g} is above {NAMESPACE}:maxJobSeconds = {longest}: "
                        f"set averageJobSeconds <= maxJobSeconds")
    if avg is not None and wait is not None and wait < avg:
        problems.append(f"{NAMESPACE}:acceptableWaitSeconds = {wait:g} is below {NAMESPACE}:averageJobSeconds = "
                        f"{avg:g}: a backlog target below one job per instance never scales in; raise it")
    return problems


def _check_egress(v: dict[str, Any]) -> list[str]:
    if v["natGateways"] == "none" and v["queueKind"] == "kafka" and not v["existingVpcId"]:
        return [f"{NAMESPACE}:natGateways = none does not work with {NAMESPACE}:queueKind = kafka: the API "
                f"function runs in the VPC to reach MSK and needs a NAT gateway for SSM; set natGateways: single"]
    return []


_GROUP_NAME = re.compile(r"^[a-z][a-z0-9-]{0,23}$")
MAX_MODEL_GROUPS = 6  # main queue + groups + 2 InService metrics + the expression: a metric-math alarm takes 10


def _check_model_groups(v: dict[str, Any]) -> list[str]:
    """modelGroups: valid queue-name suffixes, valid model ids, each model in one group at most."""
    key, groups, problems, seen = f"{NAMESPACE}:modelGroups", v["modelGroups"] or {}, [], {}
    if len(groups) > MAX_MODEL_GROUPS:
        problems.append(f"{key} has {len(groups)} groups: at most {MAX_MODEL_GROUPS} (each is a queue every worker "
                        f"polls and a metric the scaling policy and alarms sum; metric math takes 10 metrics)")
    for name, models in groups.items():
        if not _GROUP_NAME.match(name) or name == "default":
            problems.append(f"{key} group {name!r}: names are 1-24 lowercase letters, digits and '-', starting "
                            f"with a letter, and not 'default' (the main queue's group)")
        if not models:
            problems.append(f"{key} group {name!r} lists no models: list at least one model id")
        for model in models:
            if not _MODEL_ID.match(model):
                problems.append(f"{key} group {name!r} contains {model!r}: model ids are lowercase 'name' or "
                                f"'family/name' of letters, digits, '.', '_' and '-'")
            elif model in seen:
                problems.append(f"{key}: model {model!r} is in groups {seen[model]!r} and {name!r}: put it in one")
            seen.setdefault(model, name)
    if groups and v["queueKind"] == "kafka":
        problems.append(f"{key} is set with {NAMESPACE}:queueKind = kafka: the stack makes a queue per group for "
                        f"sqs only so far (the Kafka design, a topic per group, is in docs/fleet.md); use "
                        f"queueKind sqs or remove modelGroups")
    return problems


def _check_misc(v: dict[str, Any]) -> list[str]:
    problems = []
    for model in v["hotModels"] or ():
        if not _MODEL_ID.match(model):
            problems.append(f"{NAMESPACE}:hotModels contains {model!r}: model ids are lowercase 'name' or "
                            f"'family/name' of letters, digits, '.', '_' and '-'")
    if v["apiBurstLimit"] is not None and v["apiRateLimit"] is not None and v["apiBurstLimit"] < v["apiRateLimit"]:
        problems.append(f"{NAMESPACE}:apiBurstLimit = {v['apiBurstLimit']} is below {NAMESPACE}:apiRateLimit = "
                        f"{v['apiRateLimit']}: set apiBurstLimit >= apiRateLimit")
    if v["existingVpcId"] and len(v["existingPrivateSubnetIds"] or ()) < 2:
        problems.append(f"{NAMESPACE}:existingVpcId is set but {NAMESPACE}:existingPrivateSubnetIds lists "
                        f"{len(v['existingPrivateSubnetIds'] or ())} subnets: list at least two, in different AZs")
    if v["existingPrivateSubnetIds"] and not v["existingVpcId"]:
        problems.append(f"{NAMESPACE}:existingPrivateSubnetIds is set without {NAMESPACE}:existingVpcId: "
                        f"set both or neither")
    for subnet in v["existingPrivateSubnetIds"] or ():
        if not re.match(r"^subnet-[0-9a-f]{8,17}$", subnet):
            problems.append(f"{NAMESPACE}:existingPrivateSubnetIds contains {subnet!r}: must be subnet ids "
                            f"like subnet-0123456789abcdef0")
    if v["alarmEmail"] and v["alarmsEnabled"] is False:
        problems.append(f"{NAMESPACE}:alarmEmail is set but {NAMESPACE}:alarmsEnabled is false: "
                        f"set alarmsEnabled: true or remove alarmEmail")
    for key in ("owner", "costCenter"):
        if v[key] is None and key not in v.get("_invalid", ()):
            problems.append(f"{NAMESPACE}:{key} is not set: it is required for the {key[0].upper() + key[1:]} "
                            f"tag; run `pulumi config set {key} <value>`")
    return problems


def load(values: Mapping[str, Any], stack: str, region: str | None = None) -> FleetConfig:
    """Validate raw settings (keys without the namespace) and build the typed config."""
    problems: list[str] = []
    if region is None or region == "":
        region = "us-east-1"
    if not _REGION.match(region):
        problems.append(f"aws:region = {region!r}: must be an AWS region name like us-east-1")
    v = _read_all(values, problems)
    v["_invalid"] = {s.key for s in SETTINGS if values.get(s.key) is not None and v[s.key] is None}
    flavor = v["amiFlavor"]
    if flavor is not None:
        if v["instanceTypes"] is None and "instanceTypes" not in v["_invalid"]:
            v["instanceTypes"] = DEFAULT_INSTANCE_TYPES[flavor]
        if v["backend"] is None and "backend" not in v["_invalid"]:
            v["backend"] = DEFAULT_BACKEND[flavor]
    environment = v["environment"] or stack
    if v["environment"] is None and "environment" not in v["_invalid"] and not _ENV_NAME.match(stack):
        problems.append(f"stack name {stack!r} cannot be the environment name: set {NAMESPACE}:environment "
                        f"(2-16 characters: lowercase letters, digits, '-', starting with a letter)")
    for check in (_check_instance_types, _check_backends, _check_sizes, _check_job_times, _check_misc,
                  _check_egress, _check_model_groups, capacity.check):
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
                            model_groups=tuple((g, tuple(ms)) for g, ms in (v["modelGroups"] or {}).items())),
        storage=StorageSettings(output_retention_days=v["outputRetentionDays"],
                                log_retention_days=v["logRetentionDays"],
                                point_in_time_recovery=v["pointInTimeRecovery"]),
        api=ApiSettings(auth=v["apiAuth"], rate_limit=v["apiRateLimit"], burst_limit=v["apiBurstLimit"],
                        key_quota_per_day=v["apiKeyQuotaPerDay"], max_wait_seconds=v["apiMaxWaitSeconds"],
                        handler_concurrency=v["apiHandlerConcurrency"],
                        authorizer_concurrency=v["apiAuthorizerConcurrency"]),
        network=NetworkSettings(nat_gateways=v["natGateways"], vpc_cidr=v["vpcCidr"],
                                availability_zone_count=v["availabilityZoneCount"],
                                existing_vpc_id=v["existingVpcId"],
                                existing_private_subnet_ids=tuple(v["existingPrivateSubnetIds"])),
        monitoring=MonitoringSettings(alarms_enabled=v["alarmsEnabled"], alarm_email=v["alarmEmail"]),
        monthly_budget_usd=v["monthlyBudgetUsd"],
        raw=dict(values),
    )


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
