"""AWS's rules between resources, which the engine and the mocks accept but AWS rejects or ignores.

- ``sqs-event-source-visibility``: Lambda refuses to create an SQS event source mapping whose function
  timeout exceeds the queue's visibility timeout (AWS default 30 s): "Queue visibility timeout: 30 seconds
  is less than Function timeout: 60 seconds".
- ``vpc-function-egress``: a function in a VPC reaches AWS APIs only through its security groups' egress
  (to the internet through a NAT gateway, or to VPC endpoints). The provider removes AWS's default
  allow-all egress, so a group that only opens the Kafka port leaves every DynamoDB, SSM or CloudWatch
  call hanging until the function times out.
- ``lifecycle-hooks-apply``: the provider applies an Auto Scaling group's ``initialLifecycleHooks`` only
  when it creates the group; later changes show in the preview and never reach AWS. Each such hook needs a
  same-named ``LifecycleHook`` resource with the same settings; a launching hook on a group that starts
  instances at creation must also stay in ``initialLifecycleHooks`` (a hook resource exists only after its
  group, when the first instances may already be running).
- ``input-urls-within-egress``: the job API accepts input image URLs that the workers fetch; every scheme's
  port and every explicit port it accepts must be open outbound to the internet on the workers' launch
  templates, or such jobs time out on AWS (and never locally).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from .common import as_list, policy_statements, settings
from .egress import SECURITY_GROUP, describe, group_egress, tcp_ports_to_anywhere
from .graph import get, number, of_type, referenced, refers, seconds

FUNCTION = "aws:lambda/function:Function"
EVENT_SOURCE = "aws:lambda/eventSourceMapping:EventSourceMapping"
QUEUE = "aws:sqs/queue:Queue"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
GROUP = "aws:autoscaling/group:Group"
HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
SQS_DEFAULT_VISIBILITY = 30  # seconds, when a queue leaves visibilityTimeoutSeconds unset
LAMBDA_DEFAULT_TIMEOUT = 3
HTTPS = 443
LAUNCHING = "autoscaling:EC2_INSTANCE_LAUNCHING"
HOOK_SETTINGS = {"lifecycleTransition": None, "heartbeatTimeout": 3600, "defaultResult": "ABANDON"}  # AWS defaults
# IAM service prefix -> the VPC endpoint service name; services reached other ways are left out:
# kafka-cluster (data plane, on the brokers' port) and logs (Lambda delivers a function's logs itself).
ENDPOINT_SERVICE = {"cloudwatch": "monitoring", "kafka-cluster": None, "logs": None}
SCHEME_PORTS = {"https": 443, "http": 80}

INPUT_URLS_SCHEMA = PolicyConfigSchema(properties={
    "inputUrlSchemes": {"type": "array", "items": {"type": "string"}, "default": ["https"],
                        "description": "URL schemes the job API accepts for input images (the stack emits them)"},
    "inputUrlPorts": {"type": "array", "items": {"type": "integer"}, "default": [443],
                      "description": "explicit ports the job API accepts in input image URLs"},
})


# --- SQS event sources -----------------------------------------------------------------------------
def _validate_event_source_visibility(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    queues, functions = of_type(args.resources, QUEUE), of_type(args.resources, FUNCTION)
    for mapping in of_type(args.resources, EVENT_SOURCE):
        for queue in referenced(mapping, "eventSourceArn", queues):
            raw = get(queue.props, "visibilityTimeoutSeconds")
            visibility = number(raw, SQS_DEFAULT_VISIBILITY)
            for fn in referenced(mapping, "functionName", functions):
                timeout = number(get(fn.props, "timeout"), LAMBDA_DEFAULT_TIMEOUT)
                if visibility is None or timeout is None or timeout <= visibility:
                    continue
                unset = " (unset: AWS's default)" if raw is None else ""
                report_violation(
                    f"event source mapping '{mapping.name}': function '{fn.name}' has a {seconds(timeout)} timeout but "
                    f"queue '{queue.name}' a {seconds(visibility)} visibility timeout{unset}; Lambda refuses to create "
                    f"the mapping. Set the queue's visibilityTimeoutSeconds to at least the function timeout "
                    f"(AWS recommends six times it: {6 * timeout:g}).", mapping.urn)


# --- VPC functions ---------------------------------------------------------------------------------
def _role_actions(role: PolicyResource, resources: list[PolicyResource]) -> set[str]:
    documents: list[Any] = [get(p, "policy") for p in as_list(get(role.props, "inlinePolicies")) if hasattr(p, "get")]
    documents += [get(p.props, "policy") for p in of_type(resources, ROLE_POLICY) if refers(p, "role", role)]
    actions: set[str] = set()
    for doc in documents:
        for st in policy_statements(doc):
            if st.get("Effect") == "Allow":
                actions |= {a for a in as_list(st.get("Action")) if isinstance(a, str)}
    return actions


def _services(actions: Iterable[str]) -> dict[str, list[str]]:
    """Endpoint service name -> the actions that call it."""
    out: dict[str, list[str]] = {}
    for action in sorted(actions):
        prefix = action.split(":", 1)[0].lower()
        service = ENDPOINT_SERVICE.get(prefix, prefix)
        if service:
            out.setdefault(service, []).append(action)
    return out


def _endpoint_reachable(service: str, endpoints: list[PolicyResource], egress: list[Any]) -> bool:
    """An interface endpoint with private DNS (egress 443 to its groups or any CIDR), or a gateway
    endpoint (egress 443 to its prefix list)."""
    for ep in endpoints:
        name = str(get(ep.props, "serviceName") or "")
        if not name.endswith(f".{service}"):
            continue
        kind = str(get(ep.props, "vpcEndpointType") or "Gateway")
        https = [r for r in egress if r.allows_tcp(HTTPS)]
        if kind == "Interface" and get(ep.props, "privateDnsEnabled"):
            groups = {str(g) for g in as_list(get(ep.props, "securityGroupIds"))}
            if any(r.cidrs or groups & set(r.groups) for r in https):
                return True
        if kind == "Gateway":
            prefix = get(ep.props, "prefixListId")
            if any(r.to_anywhere() or (prefix and prefix in r.prefix_lists) for r in https):
                return True
    return False


def _validate_vpc_function_egress(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    resources = list(args.resources)
    groups, roles = of_type(resources, SECURITY_GROUP), of_type(resources, ROLE)
    endpoints = of_type(resources, VPC_ENDPOINT)
    for fn in of_type(resources, FUNCTION):
        vpc = get(fn.props, "vpcConfig")
        if not vpc or (not get(vpc, "subnetIds") and not fn.property_dependencies.get("vpcConfig")):
            continue
        mine = referenced(fn, "vpcConfig", groups)
        role = referenced(fn, "role", roles)
        if not mine or not role:
            continue  # groups or role from outside the stack: nothing to read
        egress = [r for g in mine for r in group_egress(g, resources)]
        open_https = bool(tcp_ports_to_anywhere(egress, [HTTPS]))
        missing = {service: actions for service, actions in _services(_role_actions(role[0], resources)).items()
                   if not open_https and not _endpoint_reachable(service, endpoints, egress)}
        if missing:
            calls = ", ".join(f"{s} ({', '.join(a[:2])}{', ...' if len(a) > 2 else ''})" for s, a in missing.items())
            report_violation(
                f"function '{fn.name}' runs in a VPC with security group(s) {', '.join(g.name for g in mine)}, whose "
                f"egress ({describe(egress)}) reaches none of the AWS APIs it calls: {calls}. The provider removes "
                f"AWS's default allow-all egress, so these calls time out. Allow TCP 443 to 0.0.0.0/0 (through a NAT "
                f"gateway) or add VPC endpoints for these services and allow 443 to them.", fn.urn)


# --- lifecycle hooks -------------------------------------------------------------------------------
def _hook_settings(hook: Any) -> dict[str, Any]:
    return {k: get(hook, k) if get(hook, k) is not None else default for k, default in HOOK_SETTINGS.items()}


def _starts_instances(group: PolicyResource) -> bool:
    return any((number(get(group.props, k)) or 0) > 0 for k in ("desiredCapacity", "minSize"))


def _validate_hooks_apply(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    hooks = of_type(args.resources, HOOK)
    for group in of_type(args.resources, GROUP):
        own = {str(get(h, "name")): h for h in as_list(get(group.props, "initialLifecycleHooks")) if hasattr(h, "get")}
        resources = {str(get(h.props, "name")): h for h in hooks if refers(h, "autoscalingGroupName", group)}
        for name, hook in own.items():
            match = resources.get(name)
            if match is None:
                report_violation(
                    f"group '{group.name}' declares the lifecycle hook '{name}' only in initialLifecycleHooks, which "
                    f"the provider applies when it creates the group: later changes (a longer heartbeat for longer "
                    f"jobs) would show in the preview and never reach AWS. Add an aws.autoscaling.LifecycleHook named "
                    f"'{name}' for this group with the same settings.", group.urn)
            elif _hook_settings(match.props) != _hook_settings(hook):
                report_violation(
                    f"lifecycle hook '{name}' of group '{group.name}': the LifecycleHook resource "
                    f"({_hook_settings(match.props)}) differs from initialLifecycleHooks ({_hook_settings(hook)}): "
                    f"declare the same settings in both, or a replaced group starts with other hooks than AWS keeps.",
                    match.urn)
        for name, hook in resources.items():
            if get(hook.props, "lifecycleTransition") == LAUNCHING and name not in own and _starts_instances(group):
                report_violation(
                    f"group '{group.name}' starts instances when it is created, but its launching hook '{name}' is "
                    f"only a LifecycleHook resource, which AWS gets after the group: the first instances go InService "
                    f"without waiting for it. Declare it in the group's initialLifecycleHooks as well.", hook.urn)


# --- input URLs and the workers' egress ------------------------------------------------------------
def _accepted_ports(config: Mapping[str, Any]) -> dict[int, str]:
    """Port -> why it is accepted (a scheme's default port, or an explicit port)."""
    ports: dict[int, str] = {}
    for scheme in config["inputUrlSchemes"]:
        port = SCHEME_PORTS.get(str(scheme).lower())
        if port is not None:
            ports.setdefault(port, f"{scheme}://")
    for port in config["inputUrlPorts"]:
        ports.setdefault(int(port), f"port {port}")
    return ports


def _validate_input_urls(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = settings(args, INPUT_URLS_SCHEMA)
    unknown = [s for s in config["inputUrlSchemes"] if str(s).lower() not in SCHEME_PORTS]
    if unknown:
        report_violation(f"inputUrlSchemes lists {unknown}: the workers fetch input images over "
                         f"{' or '.join(SCHEME_PORTS)} only.")
    accepted = _accepted_ports(config)
    resources = list(args.resources)
    groups = of_type(resources, SECURITY_GROUP)
    for template in of_type(resources, LAUNCH_TEMPLATE):
        mine = referenced(template, "vpcSecurityGroupIds", groups) + referenced(template, "networkInterfaces", groups)
        if not mine:
            continue
        egress = [r for g in mine for r in group_egress(g, resources)]
        closed = sorted(set(accepted) - tcp_ports_to_anywhere(egress, accepted))
        if closed:
            report_violation(
                f"launch template '{template.name}': the job API accepts input image URLs on "
                f"{', '.join(f'{p} ({accepted[p]})' for p in closed)}, but the workers' security groups "
                f"({', '.join(g.name for g in mine)}) allow out only {describe(egress)}: such jobs would time out "
                f"fetching their inputs on AWS. Accept only what the egress allows (runtime/instance_contract.py "
                f"INPUT_URL_SCHEMES / INPUT_URL_PORTS) or open the egress.", template.urn)


sqs_event_source_visibility = StackValidationPolicy(
    name="sqs-event-source-visibility",
    description="Requires an SQS queue's visibility timeout to cover the timeout of a function its event source "
                "mapping invokes.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_event_source_visibility)
vpc_function_egress = StackValidationPolicy(
    name="vpc-function-egress",
    description="Requires every function in a VPC to reach the AWS APIs its role calls (HTTPS egress or endpoints).",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_vpc_function_egress)
lifecycle_hooks_apply = StackValidationPolicy(
    name="lifecycle-hooks-apply",
    description="Requires lifecycle hooks as LifecycleHook resources that update, and launching hooks on groups that "
                "start instances in initialLifecycleHooks as well.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_hooks_apply)
input_urls_within_egress = StackValidationPolicy(
    name="input-urls-within-egress",
    description="Requires the workers' egress to allow every scheme and port the job API accepts for input images.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=INPUT_URLS_SCHEMA, validate=_validate_input_urls)

POLICIES = [sqs_event_source_visibility, vpc_function_egress, lifecycle_hooks_apply, input_urls_within_egress]
