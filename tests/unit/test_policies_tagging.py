"""required-tags: own tags + provider default tags; Auto Scaling groups list their own propagated tags."""

from __future__ import annotations

import json
from pathlib import Path

import pulumi_aws
import pytest

from genai_policies import tagging
from tests.unit._policy_helpers import TAGS, resource_args, run_policy

GROUP = "aws:autoscaling/group:Group"
QUEUE = "aws:sqs/queue:Queue"


def _group_tags(propagate: bool = True, drop: str | None = None) -> list[dict]:
    return [{"key": k, "value": v, "propagateAtLaunch": propagate} for k, v in TAGS.items() if k != drop]


CASES = [
    ("provider default tags only", resource_args(QUEUE, {}, "jobs"), []),
    ("own tags complete the provider's", resource_args(QUEUE, {"tags": {"CostCenter": "x"}}, "jobs",
                                                       tags={k: v for k, v in TAGS.items() if k != "CostCenter"}), []),
    ("not taggable", resource_args("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", {}, "pab", tags={}), []),
    ("provider lacks Owner and CostCenter",
     resource_args(QUEUE, {}, "jobs", tags={"Project": "genai-fleet", "Environment": "dev"}),
     ["aws:sqs/queue:Queue 'jobs' is missing the tags Owner, CostCenter: set them in its provider's defaultTags "
      "or in the resource's own tags, so billing reports can attribute its cost."]),
    ("default provider without default tags",
     resource_args(QUEUE, {"tags": {"Project": "p"}}, "jobs", no_provider=True),
     ["aws:sqs/queue:Queue 'jobs' is missing the tags Environment, Owner, CostCenter: set them in the aws "
      "provider's defaultTags (this resource's provider has none) or in the resource's own tags, so billing "
      "reports can attribute its cost."]),
    ("empty value counts as missing", resource_args(QUEUE, {"tags": {"Owner": ""}}, "jobs"),
     ["aws:sqs/queue:Queue 'jobs' is missing the tags Owner: set them in its provider's defaultTags or in the "
      "resource's own tags, so billing reports can attribute its cost."]),
    ("group with propagated tags", resource_args(GROUP, {"tags": _group_tags()}, "fleet"), []),
    ("group relying on default tags", resource_args(GROUP, {}, "fleet"),
     ["Auto Scaling group 'fleet' must list the tags Project, Environment, Owner, CostCenter in its own `tags` "
      "with propagateAtLaunch = true: provider default tags reach neither the group nor the instances it launches, "
      "and those instances are the fleet's cost."]),
    ("group tags not propagated", resource_args(GROUP, {"tags": _group_tags(propagate=False, drop="Owner")}, "fleet"),
     ["Auto Scaling group 'fleet' must list the tags Project, Environment, Owner, CostCenter in its own `tags` "
      "with propagateAtLaunch = true: provider default tags reach neither the group nor the instances it launches, "
      "and those instances are the fleet's cost."]),
]


@pytest.mark.parametrize(("label", "args", "expected"), CASES, ids=[c[0] for c in CASES])
def test_required_tags(label, args, expected):
    assert run_policy(tagging.required_tags, args) == expected


def test_required_tags_are_configurable():
    args = resource_args(QUEUE, {}, "jobs", config={"requiredTags": ["Team"]})
    assert run_policy(tagging.required_tags, args) == [
        "aws:sqs/queue:Queue 'jobs' is missing the tags Team: set them in its provider's defaultTags or in the "
        "resource's own tags, so billing reports can attribute its cost."]


def test_provider_default_tags_as_object_are_read_too():
    args = resource_args(QUEUE, {}, "jobs")
    args.provider.props["defaultTags"] = {"tags": dict(TAGS)}
    assert run_policy(tagging.required_tags, args) == []


def test_taggable_list_matches_installed_pulumi_aws():
    shipped = json.loads(tagging.TAGGABLE_TYPES_FILE.read_text())["types"]
    assert shipped == tagging.scan_pulumi_aws(Path(pulumi_aws.__file__).parent), (
        "regenerate policies/genai_policies/taggable_types.json with tagging.scan_pulumi_aws after a pulumi-aws bump")
    assert GROUP not in shipped and QUEUE in shipped
