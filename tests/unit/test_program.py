"""The whole program under the recording mocks, for each stack file."""

from __future__ import annotations

import pytest

from fleetdev.pulumi_mocks import ProgramError, run_stack
from tests.unit.component_harness import each


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_program_runs_for_each_stack_file(stack):
    rec = run_stack(stack)
    provider = rec.one("pulumi:providers:aws", "aws")
    assert f'"Environment": "{stack}"' in provider.inputs["defaultTags"]
    assert rec.exports["environment"] == stack


def test_bad_config_fails_before_any_resource_is_declared():
    with pytest.raises(ProgramError) as err:
        run_stack("dev", {"spotShare": 1.5, "queueKind": "rabbitmq"})
    text = str(err.value)
    assert "genai-fleet:spotShare = 1.5: must be a number from 0 to 1" in text
    assert "genai-fleet:queueKind = rabbitmq: must be one of sqs, kafka" in text


def test_every_resource_is_recorded_with_its_parent():
    rec = run_stack("prod")
    urns = {r.urn for r in rec.resources}
    for resource in rec.resources:
        assert resource.parent is None or resource.parent in urns, resource.urn


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_only_the_provider_and_the_components_sit_at_the_top(stack):
    """Every resource is declared inside a component: a child created without ``parent=self`` shows up here."""
    top = [r for r in run_stack(stack).resources if r.parent is None]
    assert [r.name for r in top if r.type == "pulumi:providers:aws"] == ["aws"]
    strays = [r.urn for r in top if r.type != "pulumi:providers:aws" and not r.type.startswith("genai:")]
    assert strays == []
    assert {r.type for r in top} >= {"genai:queue:RequestQueue", "genai:api:Api", "genai:cluster:InferenceCluster"}


def test_components_are_wired_to_each_other():
    """Cross-component references in __main__.py point at the right resources."""
    rec = run_stack("prod")
    dlq = rec.one("aws:sqs/queue:Queue", "queue-dlq")
    alarm = rec.one("aws:cloudwatch/metricAlarm:MetricAlarm", "monitoring-jobs-dead-lettered")
    assert alarm.inputs["dimensions"] == {"QueueName": dlq.outputs["name"]}
    assert rec.exports["deadLetterQueueUrl"] == dlq.outputs["url"]
    assert rec.exports["apiUrl"].startswith("https://") and rec.exports["onDemandGroupName"]


def test_the_api_and_the_webhook_sender_make_output_links_on_the_stacks_cdn():
    """Issue 43: records hold keys; the API and the sender make links from the CDN's domain when they hand out."""
    rec = run_stack("prod")
    cdn = f"https://{rec.exports['cdnDomain']}"
    for name in ("api-handler-fn", "events-webhook-sender-fn"):
        fn = rec.one("aws:lambda/function:Function", name)
        assert fn.inputs["environment"]["variables"]["GENAI_OUTPUTS_BASE_URL"] == cdn, name


def test_only_the_api_and_the_webhook_sender_may_read_the_signing_key_and_they_sign_with_it():
    """Issue 43: the private half is a SecureString two functions may read (that parameter only); both are told
    which CloudFront key id and parameter to sign with."""
    import json

    rec = run_stack("prod")
    private = "/genai-fleet/prod/output-signing-keys/k1/private"
    readers = {}
    for policy in each(rec, "aws:iam/rolePolicy:RolePolicy"):
        for st in json.loads(policy.inputs["policy"])["Statement"]:
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            if any("output-signing-keys" in r for r in resources):
                readers[policy.name] = (st["Sid"], st["Action"], resources)
    assert set(readers) == {"api-handler-policy", "events-webhook-sender-policy"}, readers
    for sid, actions, resources in readers.values():
        assert sid == "OutputSigningKey" and actions in ("ssm:GetParameter", ["ssm:GetParameter"])
        assert [r.split(":parameter")[1] for r in resources] == [private]
    for name in ("api-handler-fn", "events-webhook-sender-fn"):
        env = rec.one("aws:lambda/function:Function", name).inputs["environment"]["variables"]
        assert env["GENAI_OUTPUT_SIGNING_KEY_ID"] == "outputs-signing-key-k1-id", name
        assert env["GENAI_OUTPUT_SIGNING_KEY_PARAMETER"] == private
        assert env.get("GENAI_OUTPUT_URL_TTL_SECONDS", "3600") == "3600"  # the default, 1 h (the API omits defaults)
