"""Helpers for the policy-pack tests: build the arguments the engine hands a policy, run it, collect.

``run_policy(policy, args)`` calls ``policy.validate`` with a collecting ``report_violation`` and
returns the messages. ``resource_args`` / ``stack_args`` build ``ResourceValidationArgs`` /
``StackValidationArgs`` with an aws provider whose ``defaultTags`` carry the required tags (JSON-encoded,
as the engine sends provider inputs). ``synthetic_fleet()`` is a compliant set of recorded resources
shaped like the components declare them, used where the program does not declare a resource yet.
"""

from __future__ import annotations

import json
from typing import Any

from pulumi_policy import (
    Policy,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    StackValidationArgs,
)

from fleetdev.pulumi_mocks import RecordedResource

TAGS = {"Project": "genai-fleet", "Environment": "dev", "Owner": "platform-team", "CostCenter": "genai-dev"}
STACK_URN = "urn:pulumi:dev::genai-fleet::"


def provider(tags: dict[str, str] | None = None, region: str = "us-east-1") -> PolicyProviderResource:
    props: dict[str, Any] = {"region": region}
    if tags is not None:
        props["defaultTags"] = json.dumps({"tags": tags})
    return PolicyProviderResource("pulumi:providers:aws", props, f"{STACK_URN}pulumi:providers:aws::aws", "aws")


def urn(type_token: str, name: str) -> str:
    return f"{STACK_URN}{type_token}::{name}"


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)


def resource_args(type_token: str, props: dict[str, Any], name: str = "res", *, tags: dict[str, str] | None = None,
                  config: dict[str, Any] | None = None, region: str = "us-east-1",
                  no_provider: bool = False) -> ResourceValidationArgs:
    prov = None if no_provider else provider(TAGS if tags is None else tags, region)
    return ResourceValidationArgs(type_token, props, urn(type_token, name), name, options(), prov, config)


def policy_resource(type_token: str, name: str, props: dict[str, Any], *,
                    deps: dict[str, list[PolicyResource]] | None = None, region: str = "us-east-1") -> PolicyResource:
    return PolicyResource(type_token, props, urn(type_token, name), name, options(), provider(TAGS, region), None,
                          [], dict(deps or {}))


def stack_args(resources: list[PolicyResource], config: dict[str, Any] | None = None) -> StackValidationArgs:
    return StackValidationArgs(resources, config)


def run_policy(policy: Policy, args: Any) -> list[str]:
    """Messages the policy reports for ``args`` (resource or stack arguments)."""
    found: list[str] = []
    policy.validate(args, lambda message, urn=None: found.append(message))
    return found


# --- a compliant fleet, shaped like the components declare it ------------------------------------
def _rec(type_token: str, name: str, inputs: dict[str, Any], outputs: dict[str, Any] | None = None,
         parent: str | None = None, custom: bool = True) -> RecordedResource:
    return RecordedResource(urn=urn(type_token, name), type=type_token, name=name, parent=parent, custom=custom,
                            inputs=inputs, outputs={**inputs, **(outputs or {"id": f"{name}-id"})})


def synthetic_fleet(environment: str = "dev", max_size: int = 3) -> list[RecordedResource]:
    cluster = _rec("genai:cluster:InferenceCluster", "fleet", {}, {}, custom=False)
    tags = [{"key": k, "value": v if k != "Environment" else environment, "propagateAtLaunch": True}
            for k, v in TAGS.items()]
    lt = _rec("aws:ec2/launchTemplate:LaunchTemplate", "fleet-lt", {
        "metadataOptions": {"httpTokens": "required", "httpEndpoint": "enabled", "httpPutResponseHopLimit": 2},
        "blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true", "volumeSize": 200}}],
    }, {"id": "lt-synthetic-fleet"}, parent=cluster.urn)
    group = _rec("aws:autoscaling/group:Group", "fleet-spot", {
        "minSize": 0, "maxSize": max_size, "tags": tags,
        "mixedInstancesPolicy": {
            "instancesDistribution": {"onDemandBaseCapacity": 0, "onDemandPercentageAboveBaseCapacity": 0,
                                      "spotAllocationStrategy": "price-capacity-optimized"},
            "launchTemplate": {"launchTemplateSpecification": {"launchTemplateId": "lt-synthetic-fleet"},
                               "overrides": [{"instanceType": "g6.xlarge"}, {"instanceType": "g5.xlarge"}]},
        },
    }, {"id": "fleet-spot"}, parent=cluster.urn)
    bucket = _rec("aws:s3/bucket:Bucket", "outputs", {"forceDestroy": True},
                  {"id": "outputs-bucket", "bucket": "outputs-bucket"})
    pab = _rec("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", "outputs-pab", {
        "bucket": "outputs-bucket", "blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True,
        "restrictPublicBuckets": True}, parent=bucket.urn)
    sse = _rec("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
               "outputs-sse", {"bucket": "outputs-bucket",
                               "rules": [{"applyServerSideEncryptionByDefault": {"sseAlgorithm": "AES256"}}]},
               parent=bucket.urn)
    queue = _rec("aws:sqs/queue:Queue", "jobs", {"sqsManagedSseEnabled": True})
    return [cluster, lt, group, bucket, pab, sse, queue]
