"""What the program's resources wait for and which provider they use, from the recorded registrations:
IAM before what runs with it, resource-less actions on ``*``, no deprecated inline policies, no default
provider, and the Kafka partitions the budget rule prices."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator

import pytest
import yaml

from fleetdev.pulumi_mocks import ROOT, Recording, run_stack
from tests.unit.component_harness import each
from tools import preview

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # parliament imports pkg_resources
    from parliament import iam_definition

FN = "aws:lambda/function:Function"
ROLE = "aws:iam/role:Role"
ROLE_POLICY = "aws:iam/rolePolicy:RolePolicy"
ATTACHMENT = "aws:iam/rolePolicyAttachment:RolePolicyAttachment"
GROUP = "aws:autoscaling/group:Group"
KAFKA = {"queueKind": "kafka", "natGateways": "single"}
STACKS = [("dev", {}), ("prod", {}), ("dev", KAFKA)]


def _recordings() -> Iterator[tuple[str, Recording]]:
    for stack, overrides in STACKS:
        yield f"{stack} {overrides or ''}".strip(), run_stack(stack, overrides)


@pytest.mark.parametrize(("stack", "overrides"), STACKS)
def test_no_role_uses_the_deprecated_inline_policies(stack, overrides):
    """pulumi-aws deprecates ``Role.inline_policies``: each role's policy is an ``iam.RolePolicy`` of its own."""
    rec = run_stack(stack, overrides)
    assert [r.name for r in rec.of_type(ROLE) if r.inputs.get("inlinePolicies")] == []


@pytest.mark.parametrize(("stack", "overrides"), STACKS)
def test_every_function_waits_for_every_grant_of_its_role(stack, overrides):
    """A function created before its role's policy (or, in a VPC, its VPC access attachment) is attached can be
    invoked without them: its first calls fail (a VPC function cannot even be created without the ENI grants)."""
    rec = run_stack(stack, overrides)
    roles = {r.outputs["arn"]: r for r in rec.of_type(ROLE)}
    checked = 0
    for fn in each(rec, FN):
        role = roles[fn.inputs["role"]]
        grants = [g for g in (*rec.of_type(ROLE_POLICY), *rec.of_type(ATTACHMENT))
                  if g.inputs["role"] in (role.outputs["id"], role.outputs["name"])]
        assert [g for g in grants if g.type == ROLE_POLICY], fn.name
        if fn.inputs.get("vpcConfig"):
            assert [g for g in grants if g.type == ATTACHMENT], fn.name
        missing = [g.name for g in grants if g.urn not in fn.dependencies]
        assert missing == [], f"{fn.name} does not wait for {missing}"
        checked += 1
    assert checked >= 4


def test_the_kafka_api_waits_for_its_vpc_access():
    rec = run_stack("dev", KAFKA)
    handler = rec.one(FN, "api-handler-fn")
    assert handler.inputs["vpcConfig"]["subnetIds"]
    assert rec.one(ATTACHMENT, "api-handler-vpc").urn in handler.dependencies


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_worker_groups_wait_for_the_instance_policy_that_names_them(stack):
    """prod's base group launches instances as soon as it exists; their first calls (the CloudWatch agent's
    fetch-config, the launching hook) need the policy, so the groups depend on it and it names them first."""
    rec = run_stack(stack)
    access = rec.one(ROLE_POLICY, "cluster-access")
    groups = rec.of_type(GROUP)
    assert groups and all(access.urn in g.dependencies for g in groups)
    statements = {st["Sid"]: st for st in json.loads(access.inputs["policy"])["Statement"]}
    arns = statements["LifecycleAndProtection"]["Resource"]
    assert sorted(a.rsplit("/", 1)[1] for a in arns) == sorted(g.inputs["name"] for g in groups)
    assert {g.inputs["name"] for g in groups} <= {f"genai-{stack}-spot", f"genai-{stack}-ondemand"}


def _no_resource_actions() -> set[str]:
    """Actions AWS grants only on Resource "*" (parliament's copy of the Service Authorization Reference)."""
    out = set()
    for service in iam_definition:
        for privilege in service["privileges"]:
            if all(not t["resource_type"] for t in privilege["resource_types"]):
                out.add(f"{service['prefix']}:{privilege['privilege']}".lower())
    return out


def test_actions_without_resource_level_permissions_are_granted_on_star():
    """``dynamodb:ListStreams`` takes no resource: scoped to a stream ARN it is never allowed."""
    free = _no_resource_actions()
    assert "dynamodb:liststreams" in free
    wrong, checked = [], 0
    for label, rec in _recordings():
        documents = [(p.name, p.inputs["policy"]) for p in rec.of_type(ROLE_POLICY)]
        documents += [(r.name, p["policy"]) for r in rec.of_type(ROLE) for p in r.inputs.get("inlinePolicies") or []]
        for name, document in documents:
            for st in json.loads(document)["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                checked += 1
                if st["Resource"] != "*":
                    wrong += [(label, name, a) for a in actions if a.lower() in free]
    assert checked > 20 and wrong == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_default_providers_are_disabled_and_nothing_needs_one(stack):
    """A default aws provider would take its region and credentials from the shell and carry no default tags:
    the stack files tell the engine to refuse one, and every resource and lookup names the declared provider."""
    config = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert config["pulumi:disable-default-providers"] == ["*"]
    for _, rec in _recordings():
        declared = rec.one("pulumi:providers:aws", "aws").urn
        custom = [r for r in rec.resources if r.custom and not r.type.startswith("pulumi:providers:")]
        assert {r.provider.rsplit("::", 1)[0] for r in custom} == {declared}
        assert {(c["provider"] or "").rsplit("::", 1)[0] for c in rec.calls} == {declared}


def test_kafka_is_priced_at_the_partitions_the_stack_creates():
    """The topic creator makes max(6, maxSize) partitions for the jobs topic plus one for its DLQ: 41 in prod."""
    result = preview.preview("prod", {"queueKind": "kafka"})
    invocation = json.loads(result.recording.one("aws:lambda/invocation:Invocation").inputs["input"])
    created = sum(t["partitions"] for t in invocation["topics"])
    assert created == 41
    (line,) = [i for i in result.estimate.items if i.item.startswith("MSK Serverless")]
    assert f"1 cluster + {created} partitions" in line.note
    assert preview.stack_policy_config("prod", {"queueKind": "kafka"})["monthly-cost-budget"]["mskPartitions"] == 41


def test_the_offline_preview_sees_the_network_the_pack_checks():
    """The network is plain pulumi-aws (not awsx.ec2.Vpc, which records as one opaque resource under mocks:
    docs/components-storage.md): the subnets, routes, NAT gateways and endpoints are all recorded."""
    rec = run_stack("prod")
    assert not [r.type for r in rec.resources if r.type.startswith("awsx:")]
    count = {t: len(rec.of_type(f"aws:ec2/{t}")) for t in (
        "subnet:Subnet", "routeTable:RouteTable", "route:Route", "natGateway:NatGateway", "vpcEndpoint:VpcEndpoint")}
    assert count == {"subnet:Subnet": 6, "routeTable:RouteTable": 4, "route:Route": 4, "natGateway:NatGateway": 3,
                     "vpcEndpoint:VpcEndpoint": 2}
