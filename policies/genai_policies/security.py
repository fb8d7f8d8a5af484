"""Security: IMDSv2, EBS and S3 encryption, S3 public access, HTTPS-only CloudFront, no open ingress,
encrypted SQS, least-privilege IAM and authorised API routes.

The S3 rules are stack policies: a bucket in pulumi-aws v7 is configured through separate resources
(``BucketPublicAccessBlock``, ``BucketServerSideEncryptionConfiguration``) that point at it with their
``bucket`` input. A bucket is matched through the engine's property dependencies (what
``pulumi preview`` provides, even while ids are unknown) or, failing that, by value (bucket id or name).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

from .common import as_bool, as_list, policy_statements, settings

LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
EBS_VOLUME = "aws:ebs/volume:Volume"
BUCKET_TYPES = ("aws:s3/bucket:Bucket", "aws:s3/bucketV2:BucketV2")
PUBLIC_ACCESS_BLOCK = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
SSE_TYPES = ("aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
             "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2")
BUCKET_ACL_TYPES = ("aws:s3/bucketAcl:BucketAcl", "aws:s3/bucketAclV2:BucketAclV2")
CLOUDFRONT = "aws:cloudfront/distribution:Distribution"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SG_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
SQS_QUEUE = "aws:sqs/queue:Queue"
ROUTE = "aws:apigatewayv2/route:Route"
IAM_POLICY_DOCS = {  # type -> input holding a policy document
    "aws:iam/policy:Policy": "policy",
    "aws:iam/rolePolicy:RolePolicy": "policy",
    "aws:iam/userPolicy:UserPolicy": "policy",
    "aws:iam/groupPolicy:GroupPolicy": "policy",
}
IAM_ROLE = "aws:iam/role:Role"
OPEN_CIDRS = ("0.0.0.0/0", "::/0")
PUBLIC_ACLS = ("public-read", "public-read-write", "authenticated-read")
PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")

# Actions that AWS only grants on Resource "*" (no resource-level permissions), as used by the
# worker agent (CloudWatch metrics, SSM agent, instance discovery). Extend through policy config.
DEFAULT_STAR_RESOURCE_ACTIONS = [
    "cloudwatch:PutMetricData", "cloudwatch:GetMetricData", "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics", "cloudwatch:DescribeAlarms", "ec2:Describe*", "autoscaling:Describe*",
    "ecr:GetAuthorizationToken", "sts:GetCallerIdentity", "xray:PutTraceSegments", "xray:PutTelemetryRecords",
    "ssm:DescribeParameters", "ssm:UpdateInstanceInformation", "ssmmessages:*", "ec2messages:*",
    "logs:DescribeLogGroups", "s3:ListAllMyBuckets", "kms:GenerateRandom", "kafka-cluster:Connect",
    "dynamodb:ListStreams",
]

IAM_SCHEMA = PolicyConfigSchema(properties={
    "starResourceActions": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_STAR_RESOURCE_ACTIONS,
                            "description": "Action patterns that may use Resource '*' (no resource-level "
                                           "permissions exist for them)."},
})
ROUTES_SCHEMA = PolicyConfigSchema(properties={
    "publicRoutes": {"type": "array", "items": {"type": "string"}, "default": ["GET /health", "GET /v1/health"],
                     "description": "Route keys that may be called without authorisation (health checks)."},
})


# --- EC2 -----------------------------------------------------------------------------------------
def _validate_imdsv2(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in (LAUNCH_TEMPLATE, INSTANCE):
        return
    options = args.props.get("metadataOptions") or {}
    if options.get("httpEndpoint") == "disabled":
        return
    if options.get("httpTokens") != "required":
        report_violation(f"{args.resource_type} '{args.name}' allows IMDSv1: set metadataOptions.httpTokens = "
                         f"\"required\" so that a request forgery on the instance cannot read its role's "
                         f"credentials.", None)


def _validate_ebs_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = args.props
    if args.resource_type == LAUNCH_TEMPLATE:
        mappings = [m for m in as_list(props.get("blockDeviceMappings")) if m.get("ebs") is not None]
        if not mappings:
            report_violation(f"launch template '{args.name}' maps no EBS volume, so root volume encryption depends "
                             f"on the AMI: add blockDeviceMappings for the root device with ebs.encrypted = "
                             f"\"true\".", None)
        for m in mappings:
            if not as_bool(m["ebs"].get("encrypted")):
                report_violation(f"launch template '{args.name}' maps {m.get('deviceName', 'a volume')} without "
                                 f"encryption: set ebs.encrypted = \"true\" (models and outputs live on it).", None)
    elif args.resource_type == INSTANCE:
        devices = [props.get("rootBlockDevice") or {}, *as_list(props.get("ebsBlockDevices"))]
        if any(not as_bool(d.get("encrypted")) for d in devices):
            report_violation(f"instance '{args.name}' has an unencrypted EBS volume: set encrypted = true on "
                             f"rootBlockDevice and every ebsBlockDevices entry.", None)
    elif args.resource_type == EBS_VOLUME and not as_bool(props.get("encrypted")):
        report_violation(f"EBS volume '{args.name}' is not encrypted: set encrypted = true.", None)


def _validate_open_ingress(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props, t = args.props, args.resource_type
    found: list[str] = []
    if t == SECURITY_GROUP:
        for rule in as_list(props.get("ingress")):
            found += [c for c in as_list(rule.get("cidrBlocks")) + as_list(rule.get("ipv6CidrBlocks"))
                      if c in OPEN_CIDRS]
    elif t == SG_RULE and props.get("type") == "ingress":
        found = [c for c in as_list(props.get("cidrBlocks")) + as_list(props.get("ipv6CidrBlocks")) if c in OPEN_CIDRS]
    elif t == SG_INGRESS_RULE:
        found = [c for c in (props.get("cidrIpv4"), props.get("cidrIpv6")) if c in OPEN_CIDRS]
    for cidr in dict.fromkeys(found):
        report_violation(f"{t} '{args.name}' allows ingress from {cidr}: workers take work from the queue and need "
                         f"no inbound access; allow a security group or a narrow CIDR instead.", None)


# --- S3 (stack) ----------------------------------------------------------------------------------
def _safe(props: Any, key: str) -> Any:
    try:
        return props.get(key)
    except UnknownValueError:
        return None


def _bucket_ids(bucket: PolicyResource) -> set[str]:
    ids = {_safe(bucket.props, "id"), _safe(bucket.props, "bucket"), _safe(bucket.props, "arn")}
    return {i for i in ids if isinstance(i, str) and i}


def _pointing_at(bucket: PolicyResource, candidates: Iterable[PolicyResource]) -> list[PolicyResource]:
    """Resources whose ``bucket`` input refers to ``bucket`` (dependency first, then value)."""
    ids = _bucket_ids(bucket)
    out = []
    for c in candidates:
        deps = c.property_dependencies.get("bucket") or []
        if any(d.urn == bucket.urn for d in deps) or (not deps and _safe(c.props, "bucket") in ids):
            out.append(c)
    return out


def _by_type(resources: Iterable[PolicyResource], types: Iterable[str]) -> list[PolicyResource]:
    wanted = set(types)
    return [r for r in resources if r.resource_type in wanted]


def _validate_s3_public_access(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    blocks = _by_type(args.resources, [PUBLIC_ACCESS_BLOCK])
    for block in blocks:
        off = [f for f in PAB_FLAGS if not as_bool(_safe(block.props, f))]
        if off:
            report_violation(f"public access block '{block.name}' leaves {', '.join(off)} off: set all four flags "
                             f"to true; serve outputs through CloudFront origin access control instead.", block.urn)
    for bucket in _by_type(args.resources, BUCKET_TYPES):
        if _safe(bucket.props, "acl") in PUBLIC_ACLS:
            report_violation(f"bucket '{bucket.name}' has the public ACL '{bucket.props['acl']}': remove it.",
                             bucket.urn)
        if not _pointing_at(bucket, blocks):
            report_violation(f"bucket '{bucket.name}' has no BucketPublicAccessBlock: add one with all four flags "
                             f"true, so no ACL or bucket policy can make its objects public.", bucket.urn)
    for acl in _by_type(args.resources, BUCKET_ACL_TYPES):
        if _safe(acl.props, "acl") in PUBLIC_ACLS:
            report_violation(f"bucket ACL '{acl.name}' grants '{acl.props['acl']}': use a private ACL.", acl.urn)


def _sse_algorithms(config: PolicyResource) -> list[str]:
    return [((r.get("applyServerSideEncryptionByDefault") or {}).get("sseAlgorithm") or "")
            for r in as_list(_safe(config.props, "rules"))]


def _validate_s3_encryption(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    configs = _by_type(args.resources, SSE_TYPES)
    for bucket in _by_type(args.resources, BUCKET_TYPES):
        mine = _pointing_at(bucket, configs)
        algorithms = [a for c in mine for a in _sse_algorithms(c)]
        if not any(a in ("AES256", "aws:kms", "aws:kms:dsse") for a in algorithms):
            report_violation(f"bucket '{bucket.name}' has no default encryption: add a "
                             f"BucketServerSideEncryptionConfiguration with sseAlgorithm AES256 or aws:kms.",
                             bucket.urn)


# --- edge, queue, IAM, API -----------------------------------------------------------------------
def _validate_cloudfront_https(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CLOUDFRONT:
        return
    behaviors = [("default cache behavior", args.props.get("defaultCacheBehavior") or {})]
    behaviors += [(f"cache behavior {b.get('pathPattern', '?')}", b)
                  for b in as_list(args.props.get("orderedCacheBehaviors"))]
    for label, behavior in behaviors:
        policy = behavior.get("viewerProtocolPolicy")
        if policy not in ("https-only", "redirect-to-https"):
            report_violation(f"distribution '{args.name}' {label} has viewerProtocolPolicy '{policy}': set "
                             f"redirect-to-https or https-only so outputs never travel in clear text.", None)


def _validate_sqs_encrypted(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != SQS_QUEUE:
        return
    if not (as_bool(args.props.get("sqsManagedSseEnabled")) or args.props.get("kmsMasterKeyId")):
        report_violation(f"queue '{args.name}' is not encrypted at rest: set sqsManagedSseEnabled = true or a "
                         f"kmsMasterKeyId (job messages carry prompts and webhook URLs).", None)


def _documents(args: ResourceValidationArgs) -> list[tuple[str, Any]]:
    if args.resource_type in IAM_POLICY_DOCS:
        return [(args.name, args.props.get(IAM_POLICY_DOCS[args.resource_type]))]
    if args.resource_type == IAM_ROLE:
        return [(f"{args.name}/{p.get('name', 'inline')}", p.get("policy"))
                for p in as_list(args.props.get("inlinePolicies"))]
    return []


def _statement_problems(statement: dict[str, Any], star_ok: list[str]) -> list[str]:
    if statement.get("Effect", "Allow") != "Allow":
        return []
    actions = [str(a) for a in as_list(statement.get("Action"))]
    problems = []
    if "NotAction" in statement:
        problems.append("uses NotAction with Allow, which grants every other action: list the actions instead")
    allowed = [a for a in actions if any(fnmatch.fnmatchcase(a, p) for p in star_ok)]
    wild = [a for a in actions if a == "*" or (a.endswith(":*") and a not in allowed)]
    if wild:
        problems.append(f"allows the wildcard action(s) {', '.join(wild)}: list the actions it needs")
    if "*" in [str(r) for r in as_list(statement.get("Resource"))]:
        scopable = [a for a in actions if a not in wild and a not in allowed]
        if scopable:
            problems.append(f"grants {', '.join(scopable)} on Resource \"*\": scope them to the ARNs they need")
    return problems


def _validate_iam(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    documents = _documents(args)
    if not documents:
        return
    star_ok = list(settings(args, IAM_SCHEMA)["starResourceActions"])
    for label, document in documents:
        for index, statement in enumerate(policy_statements(document)):
            sid = statement.get("Sid") or f"#{index}"
            for problem in _statement_problems(statement, star_ok):
                report_violation(f"IAM policy '{label}' statement {sid} {problem}.", None)


def _validate_routes(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != ROUTE:
        return
    public = list(settings(args, ROUTES_SCHEMA)["publicRoutes"])
    route_key = args.props.get("routeKey")
    kind = args.props.get("authorizationType") or "NONE"
    if kind == "NONE" and route_key not in public:
        report_violation(f"route '{route_key}' ({args.name}) has no authorisation: set authorizationType to CUSTOM "
                         f"(API-key Lambda authorizer), AWS_IAM or JWT, or list it in publicRoutes if it must "
                         f"stay open.", None)


imdsv2_required = ResourceValidationPolicy(
    name="imdsv2-required", description="Requires IMDSv2 (session tokens) on launch templates and instances.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_imdsv2)
ebs_encrypted = ResourceValidationPolicy(
    name="ebs-encrypted", description="Requires encrypted EBS volumes on launch templates, instances and volumes.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_ebs_encrypted)
no_open_ingress = ResourceValidationPolicy(
    name="no-open-ingress", description="Forbids security group ingress from 0.0.0.0/0 or ::/0.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_open_ingress)
s3_public_access_blocked = StackValidationPolicy(
    name="s3-public-access-blocked",
    description="Requires a full public access block on every S3 bucket and forbids public ACLs.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_s3_public_access)
s3_encryption = StackValidationPolicy(
    name="s3-encryption", description="Requires default server-side encryption on every S3 bucket.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_s3_encryption)
cloudfront_https_only = ResourceValidationPolicy(
    name="cloudfront-https-only", description="Requires HTTPS between viewers and every CloudFront cache behavior.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_cloudfront_https)
sqs_encrypted = ResourceValidationPolicy(
    name="sqs-encrypted", description="Requires server-side encryption on SQS queues.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_sqs_encrypted)
iam_least_privilege = ResourceValidationPolicy(
    name="iam-least-privilege",
    description="Forbids wildcard actions, and Resource \"*\" where the actions support scoping, in IAM policies.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=IAM_SCHEMA, validate=_validate_iam)
api_routes_authorized = ResourceValidationPolicy(
    name="api-routes-authorized", description="Requires an authorisation type on every API Gateway route.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=ROUTES_SCHEMA, validate=_validate_routes)

POLICIES = [imdsv2_required, ebs_encrypted, no_open_ingress, s3_public_access_blocked, s3_encryption,
            cloudfront_https_only, sqs_encrypted, iam_least_privilege, api_routes_authorized]
