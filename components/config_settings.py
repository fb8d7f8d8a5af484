"""Every stack setting, declared once (key, type, default, rule, help), and the tables the rules use.

``components.config`` validates raw values against ``SETTINGS`` (``components.config_rules``) and builds
the typed ``FleetConfig``; the README's configuration reference and ``Pulumi.yaml`` are checked against
this table by a test.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from runtime.backends.base import flavor_backends

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
# From the runtime's backend catalog (runtime/backends/base.py), which says which flavours install each backend.
FLAVOR_BACKENDS: dict[str, tuple[str, ...]] = {flavor: flavor_backends(flavor) for flavor in FLAVOR_FAMILIES}
DEFAULT_BACKEND: dict[str, str] = {"cuda": "comfyui", "neuron": "neuron"}
# Settings that were removed; setting one fails with the message saying why.
REMOVED: dict[str, str] = {}
# Settings that were replaced; setting one fails with the message naming the new key.
REPLACED = {"backends": "backend: each instance runs exactly one backend (the AMI installs it), so set one, "
                        "e.g. genai-fleet:backend: comfyui",
            # issue 43: outputs are signed by default now
            "privateOutputs": "outputAccess: signed (the default) serves outputs through expiring signed URLs; "
                              "outputAccess: public hands out plain links",
            "outputsSigningPublicKey": "outputSigningKeys: the names of the key pairs `genai-stack "
                                       "rotate-signing-key` creates (their public halves are read from SSM)"}
SIGNING_KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")  # outputSigningKeys entries (issue 43)
# CloudWatch Logs accepts only these retention periods.
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                      2557, 2922, 3288, 3653)

INSTANCE_TYPE_PATTERN = re.compile(r"^([a-z][a-z0-9-]*)\.([0-9a-z]+)$")
REGION_PATTERN = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
ENV_NAME_PATTERN = re.compile(r"^[a-z][a-z0-9-]{1,15}$")


@dataclass(frozen=True)
class Setting:
    """One config key: how to read it, its default and the rule its value must satisfy."""

    key: str
    kind: str  # str | int | float | bool | list | map (name -> list) | seconds (task -> seconds)
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
       pattern=ENV_NAME_PATTERN,
       pattern_help="2-16 characters: lowercase letters, digits, '-', starting with a letter"),
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
    _s("taskMaxJobSeconds", "seconds", {}, "Time limits of their own for some tasks (task -> seconds, 10-3600), e.g. "
       "{\"txt2video\": 1800}: a video may run minutes. Other tasks get maxJobSeconds; the lifecycle-hook and "
       "drain timeouts follow the longest limit."),
    _s("averageJobSeconds", "float", 3.0, "Typical job duration, used for the backlog-per-instance target.",
       minimum=0.1, maximum=3600),
    _s("acceptableWaitSeconds", "float", 30.0, "Queue wait you accept; target backlog = this / averageJobSeconds.",
       minimum=1, maximum=3600),
    _s("gpuUtilizationTarget", "int", None, "Optional target-tracking on average GPU utilisation (percent).",
       minimum=10, maximum=100),
    _s("outputRetentionDays", "int", 7, "Days generated outputs are kept in the outputs bucket.",
       minimum=1, maximum=3650),
    # issue 43: signed output URLs
    _s("outputAccess", "str", "signed", "How outputs are served: CloudFront signed URLs that expire (signed) or "
       "plain links anyone holding them may read for the whole retention (public; prod needs outputPublicReason).",
       choices=("public", "signed")),
    _s("outputUrlTtlSeconds", "int", 3600, "Lifetime of a signed output URL, counted from when it is handed out "
       "(GET, the sync answer, events, each webhook delivery).", minimum=60, maximum=7 * 86400),
    _s("outputSigningKeys", "list", ["k1"], "Names of the signing key pairs in the outputs' CloudFront key group "
       "(two during a rotation): public halves at /genai-fleet/<env>/output-signing-keys/<name>/public, private "
       "halves (SecureString) at .../<name>/private, made by `genai-stack rotate-signing-key`."),
    _s("outputSigningKey", "str", None, "The key pair the API and the webhook sender sign with; defaults to the "
       "last of outputSigningKeys.", pattern=SIGNING_KEY_NAME,
       pattern_help="1-32 characters: lowercase letters, digits, '-'"),
    _s("outputPublicReason", "str", None, "Why this stack serves outputs publicly (outputAccess: public); the "
       "policy pack refuses public outputs in production without it.", pattern=re.compile(r"^\S.{9,499}$"),
       pattern_help="10-500 characters"),
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
    _s("apiTenantBudgetUsdPerDay", "float", None, "Optional daily budget per tenant (an API key until tenants exist), "
       "USD: a job whose expected cost would exceed it is refused with 429.", minimum=0.01, maximum=1_000_000),
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


def ami_parameter_name(flavor: str, channel: str) -> str:
    return f"/genai-fleet/ami/{flavor}/{channel}"
