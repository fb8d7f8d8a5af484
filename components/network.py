"""Network: the VPC the fleet, the API's Lambda and the Kafka cluster live in.

Either creates a VPC (private subnets for workloads, small public subnets that only hold the NAT
gateways, gateway endpoints for S3 and DynamoDB on every private route table so model downloads and
job-record updates do not pay NAT charges), or, with ``natGateways: none``, a VPC without NAT whose
workload subnets route to the internet gateway and give each instance a public IPv4 address (security
groups still admit nothing inbound; no NAT hour is paid while the fleet is at zero: the dev default,
see docs/fleet.md "Egress and what it costs"), or adopts an existing VPC from config and creates nothing:
the owner of an existing VPC owns its routing, so its endpoints are theirs to add (see
docs/components-storage.md).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config import NetworkSettings

# AWS's smallest subnet; the public subnets only carry NAT gateways, so they may be this small.
_SMALLEST_PREFIX = 28


@dataclass
class NetworkArgs:
    network: NetworkSettings
    """``FleetConfig.network``: CIDR, AZ count, NAT mode, or an existing VPC to adopt."""
    region: str
    """``aws:region``: the gateway endpoints' service names."""


def plan_subnets(vpc_cidr: str, az_count: int, public_count: int) -> tuple[list[str], list[str]]:
    """Carve the VPC CIDR: private subnets of 1/8 each, public subnets inside the last eighth.

    A /16 gives /19 private subnets (8k addresses each, room for a large GPU fleet) and /22 public
    subnets. Raises ``ValueError`` when the CIDR is too small for the subnets asked for.
    """
    net = ipaddress.ip_network(vpc_cidr, strict=False)
    eighths = list(net.subnets(new_prefix=net.prefixlen + 3))
    private = [str(s) for s in eighths[:az_count]]
    public_prefix = min(net.prefixlen + 6, _SMALLEST_PREFIX)
    public_pool = list(eighths[-1].subnets(new_prefix=public_prefix))
    if len(public_pool) < public_count or az_count > len(eighths) - 1:
        raise ValueError(f"vpcCidr {vpc_cidr} is too small for {az_count} private and {public_count} public "
                         f"subnets; use a larger block (for example a /20)")
    return private, [str(s) for s in public_pool[:public_count]]


class Network(pulumi.ComponentResource):
    """VPC with private subnets across AZs, NAT (single or per AZ) and S3/DynamoDB gateway endpoints."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    vpc_cidr: pulumi.Output[str | None]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:network:Network", name, None, opts)
        self._name = name
        s = args.network
        if s.existing_vpc_id:
            self.vpc_id = pulumi.Output.from_input(s.existing_vpc_id)
            self.private_subnet_ids = pulumi.Output.from_input(list(s.existing_private_subnet_ids))
            self.vpc_cidr = pulumi.Output.from_input(None)
        elif s.nat_gateways == "none":
            cidrs, _ = plan_subnets(s.vpc_cidr, s.availability_zone_count, 0)
            zones = aws.get_availability_zones_output(state="available",
                                                      opts=pulumi.InvokeOptions(parent=self)).names
            vpc = self._create_vpc(s.vpc_cidr)
            _, table = self._create_internet_route(vpc)
            subnets = [self._create_subnet(vpc, zones, i, cidr, "public", table, public_ips=True)
                       for i, cidr in enumerate(cidrs)]
            self._create_gateway_endpoints(vpc, [table], args.region)
            self.vpc_id = vpc.id
            self.private_subnet_ids = pulumi.Output.all(*[sn.id for sn in subnets])
            self.vpc_cidr = vpc.cidr_block
        else:
            nat_count = 1 if s.nat_gateways == "single" else s.availability_zone_count
            private_cidrs, public_cidrs = plan_subnets(s.vpc_cidr, s.availability_zone_count, nat_count)
            zones = aws.get_availability_zones_output(state="available",
                                                      opts=pulumi.InvokeOptions(parent=self)).names
            vpc = self._create_vpc(s.vpc_cidr)
            nat_ids = self._create_public_side(vpc, zones, public_cidrs)
            private_tables, private_subnets = self._create_private_side(vpc, zones, private_cidrs, nat_ids)
            self._create_gateway_endpoints(vpc, private_tables, args.region)
            self.vpc_id = vpc.id
            self.private_subnet_ids = pulumi.Output.all(*[sn.id for sn in private_subnets])
            self.vpc_cidr = vpc.cidr_block
        self.register_outputs({"vpc_id": self.vpc_id, "private_subnet_ids": self.private_subnet_ids,
                               "vpc_cidr": self.vpc_cidr})

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    def _tag(self, suffix: str) -> dict[str, str]:
        return {"Name": f"{self._name}-{suffix}"}

    def _create_vpc(self, cidr: str) -> aws.ec2.Vpc:
        return aws.ec2.Vpc(f"{self._name}-vpc", cidr_block=cidr, enable_dns_hostnames=True, enable_dns_support=True,
                           tags=self._tag("vpc"), opts=self._opts())

    def _create_internet_route(self, vpc: aws.ec2.Vpc) -> tuple[aws.ec2.InternetGateway, aws.ec2.RouteTable]:
        igw = aws.ec2.InternetGateway(f"{self._name}-igw", vpc_id=vpc.id, tags=self._tag("igw"), opts=self._opts())
        table = aws.ec2.RouteTable(f"{self._name}-public-rt", vpc_id=vpc.id, tags=self._tag("public"),
                                   opts=self._opts())
        aws.ec2.Route(f"{self._name}-public-default", route_table_id=table.id, destination_cidr_block="0.0.0.0/0",
                      gateway_id=igw.id, opts=self._opts())
        return igw, table

    def _create_subnet(self, vpc: aws.ec2.Vpc, zones: pulumi.Output[list[str]], i: int, cidr: str, kind: str,
                       table: aws.ec2.RouteTable, public_ips: bool = False) -> aws.ec2.Subnet:
        subnet = aws.ec2.Subnet(f"{self._name}-{kind}-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                availability_zone=zones[i], map_public_ip_on_launch=public_ips,
                                tags=self._tag(f"{kind}-{i}"), opts=self._opts())
        aws.ec2.RouteTableAssociation(f"{self._name}-{kind}-{i}", subnet_id=subnet.id, route_table_id=table.id,
                                      opts=self._opts())
        return subnet

    def _create_public_side(self, vpc: aws.ec2.Vpc, zones: pulumi.Output[list[str]],
                            cidrs: list[str]) -> list[pulumi.Output[str]]:
        """Internet gateway, one public subnet per NAT gateway, and the NAT gateways themselves."""
        igw, table = self._create_internet_route(vpc)
        nat_ids = []
        for i, cidr in enumerate(cidrs):
            subnet = self._create_subnet(vpc, zones, i, cidr, "public", table)
            eip = aws.ec2.Eip(f"{self._name}-nat-{i}", domain="vpc", tags=self._tag(f"nat-{i}"), opts=self._opts())
            nat = aws.ec2.NatGateway(f"{self._name}-nat-{i}", allocation_id=eip.id, subnet_id=subnet.id,
                                     tags=self._tag(f"nat-{i}"), opts=self._opts(depends_on=[igw]))
            nat_ids.append(nat.id)
        return nat_ids

    def _create_private_side(
            self, vpc: aws.ec2.Vpc, zones: pulumi.Output[list[str]], cidrs: list[str],
            nat_ids: list[pulumi.Output[str]]) -> tuple[list[aws.ec2.RouteTable], list[aws.ec2.Subnet]]:
        """One private subnet and route table per AZ; each table's default route uses its AZ's NAT (or the one)."""
        tables, subnets = [], []
        for i, cidr in enumerate(cidrs):
            subnet = aws.ec2.Subnet(f"{self._name}-private-{i}", vpc_id=vpc.id, cidr_block=cidr,
                                    availability_zone=zones[i], map_public_ip_on_launch=False,
                                    tags=self._tag(f"private-{i}"), opts=self._opts())
            table = aws.ec2.RouteTable(f"{self._name}-private-{i}", vpc_id=vpc.id, tags=self._tag(f"private-{i}"),
                                       opts=self._opts())
            aws.ec2.Route(f"{self._name}-private-{i}-default", route_table_id=table.id,
                          destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat_ids[min(i, len(nat_ids) - 1)],
                          opts=self._opts())
            aws.ec2.RouteTableAssociation(f"{self._name}-private-{i}", subnet_id=subnet.id, route_table_id=table.id,
                                          opts=self._opts())
            tables.append(table)
            subnets.append(subnet)
        return tables, subnets

    def _create_gateway_endpoints(self, vpc: aws.ec2.Vpc, tables: list[aws.ec2.RouteTable], region: str) -> None:
        """Gateway endpoints are free and keep S3 (models, outputs) and DynamoDB (jobs) traffic off NAT."""
        for service in ("s3", "dynamodb"):
            aws.ec2.VpcEndpoint(f"{self._name}-{service}", vpc_id=vpc.id, vpc_endpoint_type="Gateway",
                                service_name=f"com.amazonaws.{region}.{service}",
                                route_table_ids=[t.id for t in tables], tags=self._tag(service), opts=self._opts())
