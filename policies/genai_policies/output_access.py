"""Signed outputs in production (issue 43): the outputs distribution serves only CloudFront-signed URLs.

A production stack whose distribution has a cache behaviour without a trusted key group serves outputs to
anyone holding a link, for the whole retention. That is a stack's choice (``outputAccess: public``) only
when it says why: ``outputPublicReason``, which ``make preview`` / ``make up`` pass in this rule's config.
"""

from __future__ import annotations

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .common import as_list, environment_of, is_production, settings

CLOUDFRONT = "aws:cloudfront/distribution:Distribution"
SCHEMA = PolicyConfigSchema(properties={
    "environment": {"type": "string", "default": "",
                    "description": "The stack's environment when its resources carry no Environment tag."},
    "outputPublicReason": {"type": "string", "default": "",
                           "description": "The stack's genai-fleet:outputPublicReason: why its outputs are public."},
})


def _validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type != CLOUDFRONT:
        return
    cfg = settings(args, SCHEMA)
    if not is_production(environment_of(args.props, args.provider, cfg)) or str(cfg["outputPublicReason"]).strip():
        return
    behaviors = [("default cache behavior", args.props.get("defaultCacheBehavior") or {})]
    behaviors += [(f"cache behavior {b.get('pathPattern', '?')}", b)
                  for b in as_list(args.props.get("orderedCacheBehaviors"))]
    for label, behavior in behaviors:
        if not as_list(behavior.get("trustedKeyGroups")):
            report_violation(f"distribution '{args.name}' {label} serves unsigned URLs in production: keep "
                             f"genai-fleet:outputAccess: signed (the default), or say why outputs are public in "
                             f"genai-fleet:outputPublicReason.", None)


signed_outputs_in_production = ResourceValidationPolicy(
    name="signed-outputs-in-production",
    description="Requires CloudFront signed URLs (a trusted key group) on every behaviour of a production stack's "
                "distribution, unless the stack gives outputPublicReason.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=SCHEMA, validate=_validate)

POLICIES = [signed_outputs_in_production]
