"""How a worker instance is launched: AMI lookup, security group and launch template.

The AMI is ``genai-fleet:amiId`` when set, else the value of the SSM parameter of the stack's AMI channel,
``/genai-fleet/ami/<flavour>/<channel>``: ``make ami`` writes ``latest`` only after the image passed its
checks (tags, encryption, IMDSv2), and ``make promote-ami`` copies a checked image to another channel
(``prod`` by default for production stacks). So no untested or dev build reaches production through
instance refresh, and rolling back is setting the parameter back (then ``make up``). The image's root
device name is read from the image itself.

Instances take no inbound traffic at all (Session Manager replaces SSH; backends listen on loopback),
use IMDSv2 only with a hop limit of 1 (the agent runs on the host, not in a container), boot from an
encrypted gp3 volume, have detailed monitoring and no key pair.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pulumi
import pulumi_aws as aws

from components.config import ClusterSettings
from components.config_settings import NAMESPACE
from runtime.instance_contract import EGRESS_HTTPS_PORT

DEFAULT_ROOT_DEVICE = "/dev/sda1"  # Ubuntu-based DLAMI / Neuron DLAMI, the bases of both Packer flavours
ROOT_VOLUME_GIB = 200
WARM_POOL_ROOT_VOLUME_GIB = 400  # hot models live on EBS when the group has a warm pool
HTTPS = EGRESS_HTTPS_PORT  # the only port out; the API accepts input image URLs on it alone (instance_contract)


def ami_filters(flavor: str, image_id: str) -> list[dict]:
    """EC2 DescribeImages filters: exactly the published image, and only if it carries the build's tags."""
    return [
        {"name": "image-id", "values": [image_id]},
        {"name": "tag:Project", "values": [NAMESPACE]},
        {"name": "tag:Flavor", "values": [flavor]},
        {"name": "state", "values": ["available"]},
    ]


def find_ami(cluster: ClusterSettings, parent: pulumi.Resource) -> tuple[pulumi.Output[str], pulumi.Output[str]]:
    """(image id, root device name): the pinned ``amiId``, or the image the AMI channel's parameter names."""
    if cluster.ami_id:
        return pulumi.Output.from_input(cluster.ami_id), pulumi.Output.from_input(DEFAULT_ROOT_DEVICE)
    invoke = pulumi.InvokeOutputOptions(parent=parent)
    image_id = aws.ssm.get_parameter_output(name=cluster.ami_parameter, opts=invoke).value
    ami = aws.ec2.get_ami_output(
        most_recent=True, owners=["self"],
        filters=image_id.apply(lambda i: ami_filters(cluster.flavor, i)), opts=invoke)
    return ami.id, ami.root_device_name.apply(lambda d: d or DEFAULT_ROOT_DEVICE)


def create_security_group(name: str, vpc_id: pulumi.Input[str], parent: pulumi.Resource) -> aws.ec2.SecurityGroup:
    """No ingress. Egress HTTPS only: AWS APIs (through NAT or endpoints) and input images (the API accepts
    https URLs on port 443 only, ``instance_contract.INPUT_URL_*``, for that reason).

    Kafka traffic (9098) leaves through the queue's ``kafka-clients`` group, attached beside this one.
    DNS, NTP and IMDS go to link-local / VPC resolver addresses that security groups do not filter.
    """
    return aws.ec2.SecurityGroup(
        f"{name}-sg", vpc_id=vpc_id, description="genai-fleet workers: no inbound, HTTPS outbound",
        ingress=[],
        egress=[{"protocol": "tcp", "from_port": HTTPS, "to_port": HTTPS, "cidr_blocks": ["0.0.0.0/0"],
                 "description": "AWS APIs and input images over HTTPS"}],
        tags={"Name": f"{name}-workers"}, opts=pulumi.ResourceOptions(parent=parent))


def create_launch_template(
    name: str, *, image_id: pulumi.Input[str], root_device: pulumi.Input[str],
    instance_profile_arn: pulumi.Input[str], security_group_ids: Sequence[pulumi.Input[str]],
    user_data: pulumi.Input[str], tags: Mapping[str, str], root_volume_gib: int = ROOT_VOLUME_GIB,
    instance_type: str | None = None, parent: pulumi.Resource,
) -> aws.ec2.LaunchTemplate:
    """A launch template; ``instance_type`` is left out when a mixed instances policy supplies the types."""
    instance_tags = {**tags, "Name": name}
    return aws.ec2.LaunchTemplate(
        f"{name}-lt",
        description="genai-fleet worker",
        image_id=image_id,
        instance_type=instance_type,
        iam_instance_profile={"arn": instance_profile_arn},
        vpc_security_group_ids=list(security_group_ids),
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",
            "http_put_response_hop_limit": 1,
            # The agent reads aws:autoscaling:groupName from IMDS tags to complete lifecycle actions.
            "instance_metadata_tags": "enabled",
        },
        block_device_mappings=[{
            "device_name": root_device,
            "ebs": {"volume_type": "gp3", "volume_size": root_volume_gib, "encrypted": "true",
                    "delete_on_termination": "true"},
        }],
        monitoring={"enabled": True},
        ebs_optimized="true",
        user_data=user_data,
        update_default_version=True,
        tag_specifications=[
            {"resource_type": "instance", "tags": instance_tags},
            {"resource_type": "volume", "tags": instance_tags},
        ],
        tags={"Name": name},
        opts=pulumi.ResourceOptions(parent=parent),
    )
