"""Deploy prerequisites: what the program checks at preview and the message a missing one gives."""

from __future__ import annotations

import pytest

from components.prerequisites import AccountFacts, PrerequisiteError, missing
from fleetdev.pulumi_mocks import MOCK_AMI_ID, MockAccount, ProgramError, run_stack
from tests.unit.component_harness import fleet, stack_fleet

READY = AccountFacts(ami_parameter_exists=True, webhook_secret_exists=True, api_key_count=1,
                     lambda_concurrency_quota=1000.0)
EMPTY = AccountFacts(ami_parameter_exists=False, webhook_secret_exists=False, api_key_count=0,
                     lambda_concurrency_quota=1000.0)


def test_a_ready_account_lacks_nothing():
    assert missing(stack_fleet("dev"), READY) == []


def test_an_empty_account_lists_every_step_in_readme_order_with_its_command():
    assert missing(stack_fleet("dev"), EMPTY) == [
        "no AMI: the SSM parameter /genai-fleet/ami/cuda/latest does not exist: run `make ami FLAVOR=cuda`, or pin "
        "one with `pulumi config set amiId ami-...`",
        "no webhook signing secret: the SSM parameter /genai-fleet/dev/webhook-secret does not exist: run "
        "`make webhook-secret STACK=dev`",
        "no API key under /genai-fleet/dev/api-keys/ (apiAuth: api-key): run `make api-key STACK=dev NAME=<who>` "
        "(prints the key once)"]


def test_prod_names_the_promotion_and_the_quota_it_needs():
    problems = missing(stack_fleet("prod"), EMPTY)
    assert problems[0] == (
        "no AMI: the SSM parameter /genai-fleet/ami/cuda/prod does not exist: run `make ami FLAVOR=cuda` then "
        "`make promote-ami FLAVOR=cuda CHANNEL=prod` (promotes the checked image at latest), or pin one with "
        "`pulumi config set amiId ami-...`")
    assert problems[-1] == (
        "the Lambda concurrent executions quota in us-east-1 is 1,000, below the 2,500 the API reserves (2,200 "
        "handler + 200 authorizer + 100 AWS keeps unreserved): run `aws service-quotas request-service-quota-increase "
        "--region us-east-1 --service-code lambda --quota-code L-B99A9384 --desired-value 2500`, or lower "
        "apiMaxWaitSeconds / apiRateLimit")
    assert missing(stack_fleet("prod"), AccountFacts(True, True, 3, 2500.0)) == []


def test_pinned_ami_iam_auth_and_unreadable_quota_need_less():
    cfg = fleet(amiId="ami-0123456789abcdef0", apiAuth="iam")
    facts = AccountFacts(ami_parameter_exists=False, webhook_secret_exists=True, api_key_count=0,
                         lambda_concurrency_quota=None)
    assert missing(cfg, facts) == []


def test_error_text_names_the_stack_and_the_readme_section():
    text = str(PrerequisiteError("dev", ["a", "b"]))
    assert text == "the AWS account is not ready for stack dev (README: Deploying to AWS):\n  - a\n  - b"


# --- the program under mocks ------------------------------------------------------------------------
def test_the_program_stops_before_declaring_anything_in_an_empty_account():
    with pytest.raises(ProgramError) as info:
        run_stack("dev", account=MockAccount.fresh())
    message = str(info.value)
    assert message.startswith("PrerequisiteError: the AWS account is not ready for stack dev")
    assert message.index("make ami FLAVOR=cuda") < message.index("make webhook-secret STACK=dev") < message.index(
        "make api-key STACK=dev")


def test_the_launch_template_uses_the_image_the_channel_names():
    image = "ami-0fedcba9876543210"
    account = MockAccount(parameters={"/genai-fleet/ami/cuda/prod": image, "/genai-fleet/prod/webhook-secret": "x",
                                      "/genai-fleet/prod/api-keys/k1": "{}",
                                      "/genai-fleet/prod/output-signing-keys/k1/public": "pem"},  # issue 43
                           lambda_concurrency_quota=2500)
    recording = run_stack("prod", account=account)
    templates = recording.of_type("aws:ec2/launchTemplate:LaunchTemplate")
    assert templates and {t.inputs["imageId"] for t in templates} == {image}
    assert recording.exports["amiId"] == image
    (lookup,) = [c for c in recording.calls if c["token"] == "aws:ec2/getAmi:getAmi"]
    filters = {f["name"]: f["values"] for f in lookup["args"]["filters"]}
    assert filters == {"image-id": [image], "tag:Project": ["genai-fleet"], "tag:Flavor": ["cuda"],
                       "state": ["available"]}
    reads = [c["args"]["name"] for c in recording.calls if c["token"] == "aws:ssm/getParameter:getParameter"]
    assert "/genai-fleet/ami/cuda/latest" not in reads  # prod never looks at what the last build published
    assert image != MOCK_AMI_ID
