"""Network component: subnets across AZs, NAT per config, S3/DynamoDB gateway endpoints, existing VPC."""

from __future__ import annotations

import ipaddress

import pytest

from components.network import Network, NetworkArgs, plan_subnets
from tests.unit.component_harness import build, children, fleet, stack_fleet

TOKEN = "genai:network:Network"
OUTPUTS = ("vpc_id", "private_subnet_ids", "vpc_cidr")


def network(cfg):
    return build(lambda: Network("net", NetworkArgs(network=cfg.network, region=cfg.region)), *OUTPUTS)


@pytest.fixture(scope="module")
def dev():
    """The dev stack's network with one NAT gateway (the stack file itself has none: see ``no_nat``)."""
    return network(stack_fleet("dev", natGateways="single"))


@pytest.fixture(scope="module")
def no_nat():
    return network(stack_fleet("dev"))


@pytest.fixture(scope="module")
def prod():
    return network(stack_fleet("prod"))


def _subnets(built, kind):
    return [r for r in built.of_type("aws:ec2/subnet:Subnet") if r.name.startswith(f"net-{kind}-")]


def test_private_subnets_span_the_configured_zones(dev, prod):
    for built, count in ((dev, 2), (prod, 3)):
        private = _subnets(built, "private")
        assert len(private) == count
        assert len({s.inputs["availabilityZone"] for s in private}) == count
        assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in private)
        assert len(built.outputs["private_subnet_ids"]) == count
    assert dev.outputs["vpc_cidr"] == "10.40.0.0/16"


def test_subnets_fit_inside_the_vpc_without_overlap(prod):
    vpc = ipaddress.ip_network(prod.one("aws:ec2/vpc:Vpc").inputs["cidrBlock"])
    nets = [ipaddress.ip_network(s.inputs["cidrBlock"]) for s in prod.of_type("aws:ec2/subnet:Subnet")]
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])


def test_dev_has_one_nat_and_prod_one_per_zone(dev, prod):
    assert len(dev.of_type("aws:ec2/natGateway:NatGateway")) == 1
    assert len(dev.of_type("aws:ec2/eip:Eip")) == 1
    assert len(prod.of_type("aws:ec2/natGateway:NatGateway")) == 3
    prod_routes = {r.name: r.inputs["natGatewayId"] for r in prod.of_type("aws:ec2/route:Route")
                   if r.name.startswith("net-private-")}
    assert prod_routes == {f"net-private-{i}-default": f"net-nat-{i}-id" for i in range(3)}
    dev_routes = {r.inputs.get("natGatewayId") for r in dev.of_type("aws:ec2/route:Route")
                  if r.name.startswith("net-private-")}
    assert dev_routes == {"net-nat-0-id"}


def test_gateway_endpoints_for_s3_and_dynamodb_on_every_private_route_table(prod):
    endpoints = {r.inputs["serviceName"]: r.inputs for r in prod.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")}
    assert set(endpoints) == {"com.amazonaws.us-east-1.s3", "com.amazonaws.us-east-1.dynamodb"}
    private_tables = {f"{r.name}-id" for r in prod.of_type("aws:ec2/routeTable:RouteTable")
                      if r.name.startswith("net-private-")}
    for ep in endpoints.values():
        assert ep["vpcEndpointType"] == "Gateway"
        assert set(ep["routeTableIds"]) == private_tables


def test_every_child_is_parented_and_prefixed(dev):
    kids = children(dev, TOKEN)
    assert len(kids) == len(dev.recording.resources) - 1
    assert all(k.name.startswith("net-") for k in kids)


def test_existing_vpc_is_adopted_without_creating_anything():
    cfg = fleet(existingVpcId="vpc-0123456789abcdef0",
                existingPrivateSubnetIds=["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"])
    built = network(cfg)
    assert [r.type for r in built.recording.resources] == [TOKEN]
    assert built.outputs["vpc_id"] == "vpc-0123456789abcdef0"
    assert built.outputs["private_subnet_ids"] == ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
    assert built.outputs["vpc_cidr"] is None


@pytest.mark.parametrize(("cidr", "azs", "public", "private_prefix", "public_prefix"), [
    ("10.40.0.0/16", 2, 1, 19, 22),
    ("10.40.0.0/16", 6, 6, 19, 22),
    ("10.0.0.0/22", 3, 3, 25, 28),
    ("10.0.0.0/24", 2, 2, 27, 28),
])
def test_plan_subnets(cidr, azs, public, private_prefix, public_prefix):
    private, pub = plan_subnets(cidr, azs, public)
    assert len(private) == azs and len(pub) == public
    assert {ipaddress.ip_network(c).prefixlen for c in private} == {private_prefix}
    assert {ipaddress.ip_network(c).prefixlen for c in pub} == {public_prefix}


def test_plan_subnets_refuses_a_block_too_small():
    with pytest.raises(ValueError, match="too small"):
        plan_subnets("10.0.0.0/24", 3, 3)


def test_without_nat_the_workers_get_public_subnets_and_no_nat_or_elastic_ip(no_nat):
    assert stack_fleet("dev").network.nat_gateways == "none"
    assert no_nat.of_type("aws:ec2/natGateway:NatGateway") == [] and no_nat.of_type("aws:ec2/eip:Eip") == []
    subnets = _subnets(no_nat, "public")
    assert len(subnets) == 2 and _subnets(no_nat, "private") == []
    assert all(s.inputs["mapPublicIpOnLaunch"] is True for s in subnets)
    assert no_nat.outputs["private_subnet_ids"] == [s.outputs["id"] for s in subnets]
    (route,) = no_nat.of_type("aws:ec2/route:Route")
    assert route.inputs["destinationCidrBlock"] == "0.0.0.0/0" and route.inputs["gatewayId"] == "net-igw-id"
    table = no_nat.one("aws:ec2/routeTable:RouteTable").outputs["id"]
    assert {a.inputs["routeTableId"] for a in no_nat.of_type("aws:ec2/routeTableAssociation:RouteTableAssociation")} \
        == {table}
    endpoints = no_nat.of_type("aws:ec2/vpcEndpoint:VpcEndpoint")
    assert {e.inputs["serviceName"].rsplit(".", 1)[-1] for e in endpoints} == {"s3", "dynamodb"}
    assert all(e.inputs["routeTableIds"] == [table] for e in endpoints)
