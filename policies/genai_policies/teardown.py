"""Teardown: production's data survives ``pulumi destroy``.

A production stack (environment starting with ``prod``: the Environment tag, own or the provider's default
tags, else the policy config's ``environment``) must mark each resource that holds data (buckets, tables,
log groups) ``protect``: a plain ``pulumi destroy`` then fails before deleting anything, and ``pulumi
destroy --exclude-protected`` removes everything else. CrossGuard passes ``protect`` in the resource's
options (``PolicyResourceOptions``) but not ``retainOnDelete``: the program's own tests check that one.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .common import environment_of, is_production, settings

DEFAULT_DATA_TYPES = [
    "aws:s3/bucket:Bucket",
    "aws:s3/bucketV2:BucketV2",
    "aws:dynamodb/table:Table",
    "aws:cloudwatch/logGroup:LogGroup",
]

PROTECTED_SCHEMA = PolicyConfigSchema(properties={
    "dataTypes": {"type": "array", "items": {"type": "string"}, "default": DEFAULT_DATA_TYPES,
                  "description": "Resource types that hold data and must be protected in production."},
    "environment": {"type": "string", "description": "Environment when a resource carries no Environment tag."},
})


def _validate_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    cfg = settings(args, PROTECTED_SCHEMA)
    if args.resource_type not in cfg["dataTypes"]:
        return
    env = environment_of(args.props, args.provider, cfg)
    if not is_production(env) or (args.opts is not None and args.opts.protect):
        return
    report_violation(f"{args.resource_type} '{args.name}' holds data of production environment '{env}' but is not "
                     f"protected: `pulumi destroy` would delete it. Set the resource options protect=True and "
                     f"retain_on_delete=True (components/teardown.py keeps its type in production).", None)


production_data_protected = ResourceValidationPolicy(
    name="production-data-protected",
    description="Requires production buckets, tables and log groups to be protected from deletion.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=PROTECTED_SCHEMA,
    validate=_validate_protected,
)

POLICIES = [production_data_protected]
