"""Teardown: production keeps its data on ``pulumi destroy`` (protect + retain_on_delete, set by the program's
stack transformation in components/teardown.py), dev deletes cleanly; the offline preview passes each
resource's real ``protect`` to the pack, whose ``production-data-protected`` rule checks it."""

from __future__ import annotations

import copy
import re

import pytest
from pulumi_policy import PolicyCustomTimeouts, PolicyResourceOptions, ResourceValidationArgs

from components.teardown import KEPT_TYPES
from fleetdev.pulumi_mocks import ROOT, run_stack
from genai_policies.teardown import production_data_protected
from tests.unit._policy_helpers import TAGS, provider, run_policy, urn
from tools import preview

BUCKET, TABLE, LOG_GROUP = "aws:s3/bucket:Bucket", "aws:dynamodb/table:Table", "aws:cloudwatch/logGroup:LogGroup"
GROUP = "aws:autoscaling/group:Group"


# --- the program ---------------------------------------------------------------------------------
def test_production_protects_and_retains_its_data_and_nothing_else():
    rec = run_stack("prod")
    kept = {r.name for r in rec.resources if r.protect or r.retain_on_delete}
    expected = {r.name for r in rec.resources if r.type in KEPT_TYPES}
    assert kept == expected
    assert {r.name for r in rec.resources if r.protect and r.retain_on_delete} == expected
    # the data the issue names: both buckets, the job table, every log group (agent, API, functions, events)
    assert {"models-bucket", "outputs-bucket", "jobs-table"} <= kept
    assert {r.name for r in rec.of_type(LOG_GROUP)} <= kept and len(rec.of_type(LOG_GROUP)) >= 10
    # what would keep the distribution (a dependency of a protected resource) stays unprotected
    assert not any(r.protect for r in rec.of_type("aws:s3/bucketPolicy:BucketPolicy"))
    assert not any(r.protect for r in rec.of_type("aws:cloudfront/distribution:Distribution"))


def test_dev_deletes_cleanly():
    dev, prod = run_stack("dev"), run_stack("prod")
    assert not [r.name for r in dev.resources if r.protect or r.retain_on_delete]
    assert {b.inputs["forceDestroy"] for b in dev.of_type(BUCKET)} == {True}
    assert {t.inputs["deletionProtectionEnabled"] for t in dev.of_type(TABLE)} == {False}  # jobs and job events
    assert {(g.inputs["forceDelete"], g.inputs["forceDeleteWarmPool"]) for g in dev.of_type(GROUP)} == {(True, True)}
    # production refuses all three, on top of protect
    assert {b.inputs["forceDestroy"] for b in prod.of_type(BUCKET)} == {False}
    assert {t.inputs["deletionProtectionEnabled"] for t in prod.of_type(TABLE)} == {True}
    assert {g.inputs["forceDelete"] for g in prod.of_type(GROUP)} == {False}


def test_the_readme_lists_what_production_keeps():
    """README "Tearing a stack down" names the kept resource types as the program keeps them."""
    text = (ROOT / "README.md").read_text()
    section = text.split("### Tearing a stack down", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(aws:[a-z0-9]+/[A-Za-z0-9]+:[A-Za-z0-9]+)`", section))
    assert named == set(KEPT_TYPES)
    for command in ("pulumi destroy --stack dev", "pulumi destroy --stack prod --exclude-protected",
                    "pulumi state unprotect --all --stack prod", "genai-stack prune-amis"):
        assert command in section, command


# --- the rule ------------------------------------------------------------------------------------
def _args(type_token: str, protect: bool, environment: str, config: dict | None = None) -> ResourceValidationArgs:
    opts = PolicyResourceOptions(protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], None)
    return ResourceValidationArgs(type_token, {}, urn(type_token, "data"), "data", opts,
                                  provider({**TAGS, "Environment": environment}), config)


@pytest.mark.parametrize(("type_token", "protect", "environment", "violates"), [
    (BUCKET, False, "prod", True),
    (TABLE, False, "prod", True),
    (LOG_GROUP, False, "prod-eu", True),
    (BUCKET, True, "prod", False),
    (TABLE, True, "prod", False),
    (BUCKET, False, "dev", False),
    ("aws:sqs/queue:Queue", False, "prod", False),
])
def test_production_data_must_be_protected(type_token, protect, environment, violates):
    found = run_policy(production_data_protected, _args(type_token, protect, environment))
    assert bool(found) is violates
    if violates:
        assert found == [f"{type_token} 'data' holds data of production environment '{environment}' but is not "
                         f"protected: `pulumi destroy` would delete it. Set the resource options protect=True and "
                         f"retain_on_delete=True (components/teardown.py keeps its type in production)."]


def test_the_rule_reads_its_types_from_the_policy_config():
    args = _args("aws:sqs/queue:Queue", False, "prod", {"dataTypes": ["aws:sqs/queue:Queue"]})
    assert run_policy(production_data_protected, args)


# --- the offline preview passes the recorded protect ---------------------------------------------
def test_preview_of_prod_is_clean_and_a_seeded_unprotected_table_fails():
    recording = copy.deepcopy(run_stack("prod"))
    config = preview.merge_policy_config(preview.stack_policy_config("prod"))
    assert not preview.evaluate(recording, config).by_policy("production-data-protected")
    table = recording.one(TABLE, "jobs-table")
    table.protect = False  # the seeded violation: what a program without the transformation would register
    found = preview.evaluate(recording, config).by_policy("production-data-protected")
    assert [(v.resource, v.level.value) for v in found] == [(f"{TABLE} jobs-table", "mandatory")]


def test_preview_passes_protect_through_to_the_policy_options():
    recording = run_stack("prod")
    resources = {r.urn: r for r in preview.stack_resources(recording)}
    for rec in recording.resources:
        assert resources[rec.urn].opts.protect is rec.protect
