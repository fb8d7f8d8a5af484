"""Tagging: every taggable AWS resource ends up with the required tags.

The program sets the tags once, as the aws provider's ``defaultTags``; resources carry no ``tags``
of their own. A resource is compliant when its own tags plus its provider's default tags hold
every required key with a non-empty value.

"Taggable" means: the resource type takes provider default tags, i.e. its pulumi-aws class has a
``tags_all`` output. ``taggable_types.json`` lists those types; ``scan_pulumi_aws`` regenerates it
from an installed pulumi_aws (a unit test keeps the two equal). Auto Scaling groups are the
exception: default tags do not reach them nor the instances they launch, so a group must list the
required tags itself, with ``propagateAtLaunch`` so that its instances (the fleet's cost) carry them.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)

from .common import effective_tags, own_tags, provider_default_tags, settings

TAGGABLE_TYPES_FILE = Path(__file__).with_name("taggable_types.json")
ASG_TYPE = "aws:autoscaling/group:Group"

REQUIRED_TAGS_SCHEMA = PolicyConfigSchema(properties={
    "requiredTags": {"type": "array", "items": {"type": "string"},
                     "default": ["Project", "Environment", "Owner", "CostCenter"],
                     "description": "Tag keys every taggable resource must carry (own tags or provider default tags)."},
})


@cache
def taggable_types() -> frozenset[str]:
    return frozenset(json.loads(TAGGABLE_TYPES_FILE.read_text())["types"])


def scan_pulumi_aws(package_dir: Path) -> list[str]:
    """Type tokens of every pulumi-aws resource class that has a ``tags_all`` output."""
    token = re.compile(r"super\(\w+, __self__\)\.__init__\(\s*'([^']+)'")
    found: set[str] = set()
    for path in package_dir.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        if "tags_all" in text:
            found.update(token.findall(text))
    return sorted(found)


def _validate_required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    required = list(settings(args, REQUIRED_TAGS_SCHEMA)["requiredTags"])
    if args.resource_type == ASG_TYPE:
        _validate_group_tags(args, required, report_violation)
        return
    if args.resource_type not in taggable_types():
        return
    tags = effective_tags(args.props, args.provider)
    missing = [key for key in required if not tags.get(key)]
    if missing:
        where = ("its provider's defaultTags" if provider_default_tags(args.provider)
                 else "the aws provider's defaultTags (this resource's provider has none)")
        report_violation(f"{args.resource_type} '{args.name}' is missing the tags {', '.join(missing)}: "
                         f"set them in {where} or in the resource's own tags, so billing reports can "
                         f"attribute its cost.", None)


def _validate_group_tags(args: ResourceValidationArgs, required: list[str], report_violation: ReportViolation) -> None:
    tags = args.props.get("tags") or []
    propagated = {t.get("key"): t for t in tags if isinstance(t, dict) and t.get("propagateAtLaunch")}
    present = own_tags(args.props)
    wrong = [key for key in required if not present.get(key) or key not in propagated]
    if wrong:
        report_violation(
            f"Auto Scaling group '{args.name}' must list the tags {', '.join(wrong)} in its own "
            f"`tags` with propagateAtLaunch = true: provider default tags reach neither the group nor the "
            f"instances it launches, and those instances are the fleet's cost.", None)


required_tags = ResourceValidationPolicy(
    name="required-tags",
    description="Requires the cost-allocation tags on every taggable AWS resource.",
    enforcement_level=EnforcementLevel.MANDATORY,
    config_schema=REQUIRED_TAGS_SCHEMA,
    validate=_validate_required_tags,
)

POLICIES = [required_tags]
