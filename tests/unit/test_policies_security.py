"""Security rules: a compliant and a violating resource each, with the exact violation text."""

from __future__ import annotations

import json

import pytest

from genai_policies import security
from tests.unit._policy_helpers import policy_resource, resource_args, run_policy, stack_args

LT = "aws:ec2/launchTemplate:LaunchTemplate"
ENCRYPTED_ROOT = [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "true", "volumeSize": 200}}]


def doc(*statements):
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


CASES = [
    ("imdsv2 required", security.imdsv2_required,
     resource_args(LT, {"metadataOptions": {"httpTokens": "required"}}, "lt"), []),
    ("imds disabled", security.imdsv2_required,
     resource_args(LT, {"metadataOptions": {"httpEndpoint": "disabled"}}, "lt"), []),
    ("imdsv1 allowed", security.imdsv2_required,
     resource_args(LT, {"metadataOptions": {"httpTokens": "optional"}}, "lt"),
     ["aws:ec2/launchTemplate:LaunchTemplate 'lt' allows IMDSv1: set metadataOptions.httpTokens = \"required\" so "
      "that a request forgery on the instance cannot read its role's credentials."]),
    ("encrypted root volume", security.ebs_encrypted, resource_args(LT, {"blockDeviceMappings": ENCRYPTED_ROOT}, "lt"),
     []),
    ("no mapping", security.ebs_encrypted, resource_args(LT, {}, "lt"),
     ["launch template 'lt' maps no EBS volume, so root volume encryption depends on the AMI: add "
      "blockDeviceMappings for the root device with ebs.encrypted = \"true\"."]),
    ("unencrypted mapping", security.ebs_encrypted,
     resource_args(LT, {"blockDeviceMappings": [{"deviceName": "/dev/sda1", "ebs": {"encrypted": "false"}}]}, "lt"),
     ["launch template 'lt' maps /dev/sda1 without encryption: set ebs.encrypted = \"true\" (models and outputs "
      "live on it)."]),
    ("unencrypted volume", security.ebs_encrypted, resource_args("aws:ebs/volume:Volume", {"size": 10}, "vol"),
     ["EBS volume 'vol' is not encrypted: set encrypted = true."]),
    ("sg from a security group", security.no_open_ingress,
     resource_args("aws:ec2/securityGroup:SecurityGroup", {"ingress": [{"securityGroups": ["sg-1"]}]}, "sg"), []),
    ("sg open to the world", security.no_open_ingress,
     resource_args("aws:ec2/securityGroup:SecurityGroup",
                   {"ingress": [{"cidrBlocks": ["0.0.0.0/0"], "ipv6CidrBlocks": ["::/0"], "fromPort": 22}]}, "sg"),
     ["aws:ec2/securityGroup:SecurityGroup 'sg' allows ingress from 0.0.0.0/0: workers take work from the queue "
      "and need no inbound access; allow a security group or a narrow CIDR instead.",
      "aws:ec2/securityGroup:SecurityGroup 'sg' allows ingress from ::/0: workers take work from the queue and need "
      "no inbound access; allow a security group or a narrow CIDR instead."]),
    ("vpc ingress rule from the vpc", security.no_open_ingress,
     resource_args("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"cidrIpv4": "10.40.0.0/16"}, "in"),
     []),
    ("vpc ingress rule open", security.no_open_ingress,
     resource_args("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {"cidrIpv4": "0.0.0.0/0"}, "in"),
     ["aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule 'in' allows ingress from 0.0.0.0/0: workers take "
      "work from the queue and need no inbound access; allow a security group or a narrow CIDR instead."]),
    ("egress rule open is fine", security.no_open_ingress,
     resource_args("aws:ec2/securityGroupRule:SecurityGroupRule", {"type": "egress", "cidrBlocks": ["0.0.0.0/0"]},
                   "out"), []),
    ("cloudfront redirect", security.cloudfront_https_only,
     resource_args("aws:cloudfront/distribution:Distribution",
                   {"defaultCacheBehavior": {"viewerProtocolPolicy": "redirect-to-https"}}, "cdn"), []),
    ("cloudfront allow-all", security.cloudfront_https_only,
     resource_args("aws:cloudfront/distribution:Distribution",
                   {"defaultCacheBehavior": {"viewerProtocolPolicy": "https-only"},
                    "orderedCacheBehaviors": [{"pathPattern": "/public/*", "viewerProtocolPolicy": "allow-all"}]},
                   "cdn"),
     ["distribution 'cdn' cache behavior /public/* has viewerProtocolPolicy 'allow-all': set redirect-to-https or "
      "https-only so outputs never travel in clear text."]),
    ("sqs managed sse", security.sqs_encrypted,
     resource_args("aws:sqs/queue:Queue", {"sqsManagedSseEnabled": True}, "jobs"), []),
    ("sqs kms", security.sqs_encrypted, resource_args("aws:sqs/queue:Queue", {"kmsMasterKeyId": "alias/x"}, "jobs"),
     []),
    ("sqs plain", security.sqs_encrypted, resource_args("aws:sqs/queue:Queue", {}, "jobs"),
     ["queue 'jobs' is not encrypted at rest: set sqsManagedSseEnabled = true or a kmsMasterKeyId (job messages "
      "carry prompts and webhook URLs)."]),
    ("iam scoped", security.iam_least_privilege,
     resource_args("aws:iam/rolePolicy:RolePolicy", {"policy": doc(
         {"Effect": "Allow", "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
          "Resource": "arn:aws:sqs:us-east-1:123456789012:jobs"},
         {"Effect": "Allow", "Action": ["cloudwatch:PutMetricData", "ec2:DescribeTags"], "Resource": "*"},
         {"Effect": "Deny", "Action": "*", "Resource": "*"})}, "worker"), []),
    ("iam wildcards", security.iam_least_privilege,
     resource_args("aws:iam/policy:Policy", {"policy": doc(
         {"Sid": "All", "Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/*"},
         {"Effect": "Allow", "Action": ["sqs:SendMessage", "cloudwatch:PutMetricData"], "Resource": "*"})}, "p"),
     ["IAM policy 'p' statement All allows the wildcard action(s) s3:*: list the actions it needs.",
      "IAM policy 'p' statement #1 grants sqs:SendMessage on Resource \"*\": scope them to the ARNs they need."]),
    ("iam role inline NotAction", security.iam_least_privilege,
     resource_args("aws:iam/role:Role", {"inlinePolicies": [{"name": "x", "policy": doc(
         {"Effect": "Allow", "NotAction": "iam:*", "Resource": "arn:aws:s3:::b"})}]}, "role"),
     ["IAM policy 'role/x' statement #0 uses NotAction with Allow, which grants every other action: list the "
      "actions instead."]),
    ("route with authorizer", security.api_routes_authorized,
     resource_args("aws:apigatewayv2/route:Route", {"routeKey": "POST /v1/jobs", "authorizationType": "CUSTOM"},
                   "jobs"), []),
    ("public health route", security.api_routes_authorized,
     resource_args("aws:apigatewayv2/route:Route", {"routeKey": "GET /health", "authorizationType": "NONE"}, "hc"), []),
    ("open route", security.api_routes_authorized,
     resource_args("aws:apigatewayv2/route:Route", {"routeKey": "POST /v1/jobs"}, "jobs"),
     ["route 'POST /v1/jobs' (jobs) has no authorisation: set authorizationType to CUSTOM (API-key Lambda "
      "authorizer), AWS_IAM or JWT, or list it in publicRoutes if it must stay open."]),
]


@pytest.mark.parametrize(("label", "policy", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_security_rules(label, policy, args, expected):
    assert run_policy(policy, args) == expected


BUCKET = "aws:s3/bucket:Bucket"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
FLAGS = {"blockPublicAcls": True, "blockPublicPolicy": True, "ignorePublicAcls": True, "restrictPublicBuckets": True}


def _bucket(name="outputs"):
    return policy_resource(BUCKET, name, {"id": f"{name}-bucket", "bucket": f"{name}-bucket"})


def test_bucket_with_full_public_access_block_by_dependency():
    bucket = _bucket()
    block = policy_resource(PAB, "outputs-pab", {"bucket": "unknown-during-preview", **FLAGS},
                            deps={"bucket": [bucket]})
    assert run_policy(security.s3_public_access_blocked, stack_args([bucket, block])) == []


def test_bucket_with_full_public_access_block_by_value():
    bucket = _bucket()
    block = policy_resource(PAB, "outputs-pab", {"bucket": "outputs-bucket", **FLAGS})
    assert run_policy(security.s3_public_access_blocked, stack_args([bucket, block])) == []


def test_public_bucket():
    bucket, other = _bucket(), _bucket("models")
    block = policy_resource(PAB, "outputs-pab", {"bucket": "outputs-bucket", **FLAGS, "blockPublicPolicy": False,
                                                 "restrictPublicBuckets": False})
    acl = policy_resource("aws:s3/bucketAcl:BucketAcl", "outputs-acl", {"bucket": "outputs-bucket",
                                                                         "acl": "public-read"})
    assert run_policy(security.s3_public_access_blocked, stack_args([bucket, other, block, acl])) == [
        "public access block 'outputs-pab' leaves blockPublicPolicy, restrictPublicBuckets off: set all four flags "
        "to true; serve outputs through CloudFront origin access control instead.",
        "bucket 'models' has no BucketPublicAccessBlock: add one with all four flags true, so no ACL or bucket "
        "policy can make its objects public.",
        "bucket ACL 'outputs-acl' grants 'public-read': use a private ACL."]


def test_bucket_encryption():
    bucket, other = _bucket(), _bucket("models")
    sse = policy_resource(SSE, "outputs-sse", {"bucket": "outputs-bucket", "rules": [
        {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms"}}]})
    assert run_policy(security.s3_encryption, stack_args([bucket, sse])) == []
    assert run_policy(security.s3_encryption, stack_args([bucket, other, sse])) == [
        "bucket 'models' has no default encryption: add a BucketServerSideEncryptionConfiguration with sseAlgorithm "
        "AES256 or aws:kms."]
