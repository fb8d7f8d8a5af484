"""The policy pack's signed-outputs-in-production rule (issue 43): prod serves outputs through signed URLs only,
unless the stack says why they are public (genai-fleet:outputPublicReason, passed in the rule's config)."""

from __future__ import annotations

from fleetdev.pulumi_mocks import run_stack
from tools import preview

RULE = "signed-outputs-in-production"
DIST = "aws:cloudfront/distribution:Distribution"


def _found(stack: str, **overrides) -> list[tuple[str, str]]:
    recording = run_stack(stack, overrides)
    config = preview.merge_policy_config(preview.stack_policy_config(stack, overrides))
    return [(v.resource, v.level.value) for v in preview.evaluate(recording, config).by_policy(RULE)]


def test_the_prod_preview_shows_the_key_group_on_the_outputs_behaviour_and_passes():
    recording = run_stack("prod")
    dist = recording.one(DIST, "outputs-cdn").inputs
    group = recording.one("aws:cloudfront/keyGroup:KeyGroup", "outputs-key-group")
    behaviours = {"default": dist["defaultCacheBehavior"],
                  **{b["pathPattern"]: b for b in dist["orderedCacheBehaviors"]}}
    assert behaviours["outputs/*"]["trustedKeyGroups"] == [group.outputs["id"]]
    assert all(b["trustedKeyGroups"] == [group.outputs["id"]] for b in behaviours.values())  # no public read
    assert _found("prod") == []


def test_seeded_public_outputs_in_prod_without_a_reason_fail_the_pack():
    found = _found("prod", outputAccess="public")
    assert found and set(found) == {(f"{DIST} outputs-cdn", "mandatory")}


def test_public_outputs_with_a_reason_or_outside_prod_pass():
    assert _found("prod", outputAccess="public",
                  outputPublicReason="marketing gallery: every output is published on the open web anyway") == []
    assert _found("dev", outputAccess="public") == []
