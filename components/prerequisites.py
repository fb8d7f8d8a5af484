"""What the account must hold before the stack deploys, checked by the program at preview time.

A new user follows README "Deploying to AWS" in order; each prerequisite there has a command that makes
it, and this module fails ``pulumi preview`` (and ``make preview-aws``) with that command when the thing
is missing, instead of letting an instance find out an hour later:

1. EC2 vCPU quotas (G and VT, Inf, ...) that cover the groups at ``maxSize``, on demand and spot apart
   (components/vcpu_quotas.py): a new account often has none, and a group that cannot launch says so only in
   its activity history (``make ami`` checks its build instance's quota before Packer starts, tools/ami_preflight.py);
2. the AMI: the SSM parameter ``/genai-fleet/ami/<flavour>/<channel>`` (``make ami`` publishes ``latest``
   after its checks; ``make promote-ami`` sets a production channel), unless ``amiId`` pins one;
3. the webhook signing secret ``/genai-fleet/<env>/webhook-secret`` (``make webhook-secret``);
4. with ``apiAuth: api-key``, at least one key under ``/genai-fleet/<env>/api-keys`` (``make api-key``);
5. a Lambda "Concurrent executions" quota that covers the API's reserved concurrency (components/capacity.py);
6. with ``outputAccess: signed`` (issue 43), the public half of each key in ``outputSigningKeys``,
   ``/genai-fleet/<env>/output-signing-keys/<name>/public`` (``make rotate-signing-key``; checked after the
   webhook secret, as the README orders them).

``missing`` is pure (facts in, messages out) so tests cover every case; ``read_facts`` asks AWS through the
stack's provider with read-only calls (no parameter value is decrypted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from components import capacity, vcpu_quotas
from components.config import FleetConfig
from components.naming import api_keys_prefix, output_signing_key_parameter, webhook_secret_parameter
from components.scaling_plan import on_demand_percentage


class PrerequisiteError(RuntimeError):
    """The account lacks something the stack needs; the message names the command that makes each."""

    def __init__(self, stack: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"the AWS account is not ready for stack {stack} (README: Deploying to AWS):\n  - "
                         + "\n  - ".join(problems))


@dataclass(frozen=True)
class AccountFacts:
    """What the read-only lookups found."""

    ami_parameter_exists: bool
    webhook_secret_exists: bool
    api_key_count: int
    lambda_concurrency_quota: float | None  # None: could not be read (the check is skipped with a warning)
    instance_vcpus: Mapping[str, int] = field(default_factory=dict)  # DescribeInstanceTypes' DefaultVCpus
    vcpu_quota_values: Mapping[str, float | None] = field(default_factory=dict)  # code -> applied; None: unread
    missing_signing_keys: tuple[str, ...] = ()  # issue 43: outputSigningKeys with no public half in SSM


def _ami_command(cfg: FleetConfig) -> str:
    flavor, channel = cfg.cluster.flavor, cfg.cluster.ami_channel
    if channel == "latest":
        return f"`make ami FLAVOR={flavor}`"
    return (f"`make ami FLAVOR={flavor}` then `make promote-ami FLAVOR={flavor} CHANNEL={channel}` "
            f"(promotes the checked image at latest)")


def vcpu_needs(cfg: FleetConfig, instance_vcpus: Mapping[str, int]) -> list[vcpu_quotas.Need]:
    """What the stack's groups need of each EC2 vCPU quota at maxSize (empty when a type's vCPUs are unknown)."""
    c = cfg.cluster
    if not all(t in instance_vcpus for t in c.instance_types):
        return []
    return vcpu_quotas.stack_needs(c.instance_types, instance_vcpus, c.max_size, c.on_demand_base,
                                   on_demand_percentage(c.spot_share))


def missing(cfg: FleetConfig, facts: AccountFacts) -> list[str]:
    """One message per missing prerequisite, in the README's order, each naming the command that makes it."""
    problems = vcpu_quotas.shortfalls(vcpu_needs(cfg, facts.instance_vcpus), facts.vcpu_quota_values, cfg.region)
    stack, secret = cfg.stack, webhook_secret_parameter(cfg.identity)
    if not cfg.cluster.ami_id and not facts.ami_parameter_exists:
        problems.append(f"no AMI: the SSM parameter {cfg.cluster.ami_parameter} does not exist: run "
                        f"{_ami_command(cfg)}, or pin one with `pulumi config set amiId ami-...`")
    if not facts.webhook_secret_exists:
        problems.append(f"no webhook signing secret: the SSM parameter {secret} does not "
                        f"exist: run `make webhook-secret STACK={stack}`")
    for key in facts.missing_signing_keys:  # issue 43
        problems.append(f"no output signing key {key}: the SSM parameter "
                        f"{output_signing_key_parameter(cfg.identity, key, 'public')} does not exist: run "
                        f"`make rotate-signing-key STACK={stack}` (or set outputAccess: public)")
    if cfg.api.auth == "api-key" and facts.api_key_count == 0:
        problems.append(f"no API key under {api_keys_prefix(cfg.identity)}/ (apiAuth: api-key): run "
                        f"`make api-key STACK={stack} NAME=<who>` (prints the key once)")
    need = cfg.api.account_concurrency_needed
    quota = facts.lambda_concurrency_quota
    if quota is not None and quota < need:
        problems.append(
            f"the Lambda concurrent executions quota in {cfg.region} is {quota:,.0f}, below the {need:,} the API "
            f"reserves ({cfg.api.reserved_handler:,} handler + {cfg.api.reserved_authorizer or 0:,} authorizer + "
            f"{capacity.UNRESERVED_MINIMUM} AWS keeps unreserved): run `aws service-quotas "
            f"request-service-quota-increase --region {cfg.region} --service-code lambda --quota-code "
            f"{capacity.QUOTA_CODE} --desired-value {need}`, or lower apiMaxWaitSeconds / apiRateLimit")
    return problems


def _parameter_exists(aws, name: str, invoke_opts) -> bool:
    try:
        aws.ssm.get_parameter(name=name, with_decryption=False, opts=invoke_opts)
    except Exception as exc:
        if "ParameterNotFound" in str(exc):
            return False
        raise
    return True


def read_facts(cfg: FleetConfig, provider) -> AccountFacts:
    """Read-only lookups through the stack's provider (runs during preview)."""
    import pulumi
    import pulumi_aws as aws

    opts = pulumi.InvokeOptions(provider=provider)
    ami = bool(cfg.cluster.ami_id) or _parameter_exists(aws, cfg.cluster.ami_parameter, opts)
    secret = _parameter_exists(aws, webhook_secret_parameter(cfg.identity), opts)
    keys = 0
    if cfg.api.auth == "api-key":
        keys = len(aws.ssm.get_parameters_by_path(path=api_keys_prefix(cfg.identity), with_decryption=False,
                                                  opts=opts).names or [])
    try:
        quota = float(aws.servicequotas.get_service_quota(service_code="lambda", quota_code=capacity.QUOTA_CODE,
                                                          opts=opts).value)
    except Exception as exc:  # noqa: BLE001 - a missing permission must not block the deploy; say so
        pulumi.log.warn(f"could not read the Lambda concurrency quota ({exc}); the API reserves "
                        f"{cfg.api.account_concurrency_needed} executions: check the quota yourself")
        quota = None
    vcpus, vcpu_values = _read_vcpu_quotas(cfg, aws, opts)
    signing = tuple(k for k in cfg.outputs.signing_keys if cfg.outputs.signed and not _parameter_exists(
        aws, output_signing_key_parameter(cfg.identity, k, "public"), opts))  # issue 43
    return AccountFacts(ami, secret, keys, quota, vcpus, vcpu_values, missing_signing_keys=signing)


def _read_vcpu_quotas(cfg: FleetConfig, aws, opts) -> tuple[dict[str, int], dict[str, float | None]]:
    """vCPUs of each configured type and the applied value of every EC2 quota they draw on."""
    import pulumi

    try:
        vcpus = {t: int(aws.ec2.get_instance_type(instance_type=t, opts=opts).default_vcpus)
                 for t in cfg.cluster.instance_types}
    except Exception as exc:  # noqa: BLE001 - as with the quotas: warn, do not block the deploy
        pulumi.log.warn(f"could not read the vCPUs of {', '.join(cfg.cluster.instance_types)} ({exc}): the EC2 "
                        "vCPU quotas are not checked: see docs/amis.md, \"Quotas the build and the fleet need\"")
        return {}, {}
    values: dict[str, float | None] = {}
    for need in vcpu_needs(cfg, vcpus):
        code = need.quota.code
        if code in values:
            continue
        try:
            values[code] = float(aws.servicequotas.get_service_quota(
                service_code=vcpu_quotas.SERVICE_CODE, quota_code=code, opts=opts).value)
        except Exception as exc:  # noqa: BLE001 - a missing permission must not block the deploy; say so
            pulumi.log.warn(f"could not read the EC2 quota \"{need.quota.name}\" ({code}): {exc}; the groups need "
                            f"{need.vcpus} vCPUs of it: check it yourself")
            values[code] = None
    return vcpus, values


def require(cfg: FleetConfig, provider) -> None:
    """Raise ``PrerequisiteError`` naming every missing prerequisite and its command."""
    problems = missing(cfg, read_facts(cfg, provider))
    if problems:
        raise PrerequisiteError(cfg.stack, problems)
