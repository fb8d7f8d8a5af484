"""README "Deploying to AWS", step by step, against an empty account (issue 13).

The steps are read from README.md, in order. Each command a step names is run by a handler that does
what the command does to the account: the AMI build's quota check (``tools.ami_preflight``) and publishing
(``tools.ami_build.publish_ami``), the promotion, the webhook secret and the API key (``tools/stack_setup.py``)
against moto; a quota request sets the mocked account's quota (Lambda, or an EC2 vCPU quota, 0 in a new
account); ``make preview-aws`` / ``make up`` write the stack's policy config
(``tools/preview.py --emit-policy-config``) and run the program under the recording mocks against an
account holding what moto holds, then the policy pack with that config. Commands without a handler
(``pulumi login``, alternatives such as pinning ``amiId``) change nothing here; preview and deploy
commands act only where they lead a step (elsewhere they are references, like "then `make up`").

A run in which one prerequisite command is left out must stop, at the step the user would be at, with
a message naming exactly that command; the complete run must preview clean, budget from the stack.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from moto import mock_aws

from fleetdev.pulumi_mocks import ROOT, MockAccount, ProgramError, stack_config
from tests.unit.test_ami_build import GOOD_TAGS, _as_aws_reports, _register_ami
from tools import ami_build, ami_preflight, preview, signing_keys, stack_setup

STEP = re.compile(r"^(\d+)\. \*\*(.+?)\*\*")
COMMAND = re.compile(r"`((?:make|pulumi|aws|python) [^`]+)`")


def readme_steps() -> list[tuple[int, str, list[str]]]:
    """(number, title, commands) of the numbered list under "## Deploying to AWS" (items end at a blank line)."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Deploying to AWS", 1)[1].split("\n## ", 1)[0]
    items: list[tuple[int, str, list[str]]] = []
    for line in section.splitlines():
        match = STEP.match(line)
        if match:
            items.append((int(match[1]), match[2], [line]))
        elif items and line.startswith("   "):
            items[-1][2].append(line)
        elif items and not line.strip():
            break
    return [(n, title, COMMAND.findall(" ".join(lines))) for n, title, lines in items]


class StepStoppedError(Exception):
    """A step failed; the message is what the user sees."""


@dataclass
class Account:
    """moto holds SSM and EC2; the quotas are a new account's until a request raises them."""

    session: Any
    quota: float = 1000.0
    ec2_quotas: dict[str, float] = field(default_factory=dict)  # code -> vCPUs; absent: 0
    published: list[str] = field(default_factory=list)
    recording: Any = None
    result: Any = None

    def mock(self) -> MockAccount:
        ssm = self.session.client("ssm")
        names = [p["Name"] for page in ssm.get_paginator("describe_parameters").paginate()
                 for p in page["Parameters"]]
        values = {n: ssm.get_parameter(Name=n, WithDecryption=True)["Parameter"]["Value"] for n in names}
        return MockAccount(parameters=values, lambda_concurrency_quota=self.quota, ec2_vcpu_quotas=self.ec2_quotas)


def _make_ami(account: Account, m: re.Match, stack: str) -> None:
    ec2 = account.session.client("ec2")
    build_type = ami_preflight.build_instance_type(m[1], ami_preflight.packer_values([]))
    need = ami_preflight.build_quota_need(ec2, build_type)  # what genai-ami checks before Packer starts
    try:
        ami_preflight.check_build_quota(need, account.ec2_quotas.get(need.quota.code, 0.0), "us-east-1")
    except ami_build.AmiBuildError as exc:
        raise StepStoppedError(str(exc)) from exc
    _as_aws_reports(ec2)
    image = _register_ami(ec2, {**GOOD_TAGS, "Flavor": m[1]})
    ami_build.publish_ami(account.session.client("ssm"), m[1], image, {**GOOD_TAGS, "Flavor": m[1]})
    account.published.append(image)


def _promote(account: Account, m: re.Match, stack: str) -> None:
    if not stack_setup.stack_settings(stack).is_production:
        return  # README step 3: production stacks promote; the others follow latest
    ec2 = account.session.client("ec2")
    _as_aws_reports(ec2)
    try:
        stack_setup.promote_ami(account.session.client("ssm"), ec2, m[1], m[2])
    except stack_setup.SetupError as exc:
        raise StepStoppedError(str(exc)) from exc


def _webhook_secret(account: Account, m: re.Match, stack: str) -> None:
    stack_setup.ensure_webhook_secret(account.session.client("ssm"), stack_setup.stack_settings(m[1]))


def _signing_key(account: Account, m: re.Match, stack: str) -> None:  # issue 43: the first step makes k1
    out = signing_keys.rotate_signing_key(account.session.client("ssm"), stack_setup.stack_settings(m[1]),
                                          ROOT / f"Pulumi.{m[1]}.yaml")
    assert out["step"] == "init", out  # an empty account: the stack file is not edited


def _api_key(account: Account, m: re.Match, stack: str) -> None:
    out = stack_setup.mint_api_key(account.session.client("ssm"), stack_setup.stack_settings(m[1]), m[2])
    assert out["key"].startswith("gf_")


def _quota(account: Account, m: re.Match, stack: str) -> None:
    account.quota = float(m[1])


def _ec2_quota(account: Account, m: re.Match, stack: str) -> None:
    account.ec2_quotas[m[1]] = float(m[2])


def _preview(account: Account, m: re.Match, stack: str) -> None:
    config_file = ROOT / ".build" / f"test-deploy-policy-config.{m[1]}.json"
    config_file.parent.mkdir(exist_ok=True)
    assert preview.main(["--stack", m[1], "--emit-policy-config", str(config_file)]) == 0  # make policy-config
    policy_config = json.loads(config_file.read_text())
    config_file.unlink()
    try:
        account.result = preview.preview(m[1], policy_config=policy_config, account=account.mock())
    except ProgramError as exc:
        raise StepStoppedError(str(exc)) from exc
    mandatory = account.result.mandatory
    if mandatory:
        raise StepStoppedError("; ".join(f"{v.policy}: {v.message}" for v in mandatory))


def _upload(account: Account, m: re.Match, stack: str) -> None:
    assert account.result is not None, "models are uploaded to the bucket `make up` created"
    assert "modelStoreBucket" in account.result.recording.exports


Handler = Callable[[Account, re.Match, str], None]
HANDLERS: list[tuple[re.Pattern, Handler, bool]] = [  # (command, handler, acts only when it leads its step)
    (re.compile(r"^make ami FLAVOR=(\w+)$"), _make_ami, False),
    (re.compile(r"^make promote-ami FLAVOR=(\w+) CHANNEL=([\w-]+)$"), _promote, False),
    (re.compile(r"^make webhook-secret STACK=(\w+)$"), _webhook_secret, False),
    (re.compile(r"^make rotate-signing-key STACK=(\w+)$"), _signing_key, False),
    (re.compile(r"^make api-key STACK=(\w+) NAME=(\w+)$"), _api_key, False),
    (re.compile(r"^aws service-quotas request-service-quota-increase .*--quota-code L-B99A9384 "
                r"--desired-value (\d+)$"), _quota, False),
    (re.compile(r"^aws service-quotas request-service-quota-increase .*--service-code ec2 --quota-code (L-[0-9A-F]+) "
                r"--desired-value (\d+)$"), _ec2_quota, False),
    (re.compile(r"^make (?:preview-aws|up) STACK=(\w+)$"), _preview, True),
    (re.compile(r"^python tools/model_upload\.py --bucket \"\$\(pulumi stack output modelStoreBucket\)\""), _upload,
     True),
]


def run_steps(stack: str, skip: str | None = None) -> tuple[int | None, str, Account]:
    """Run the README's steps for ``stack``; (step it stopped at or None, message, account)."""
    with mock_aws():
        account = Account(boto3.session.Session(region_name=stack_config(stack)[1]))
        for number, _, commands in readme_steps():
            for position, raw in enumerate(commands):
                command = raw.replace("STACK=dev", f"STACK={stack}")
                if command == skip:
                    continue
                for pattern, handler, leading_only in HANDLERS:
                    match = pattern.match(command)
                    if match and (position == 0 or not leading_only):
                        try:
                            handler(account, match, stack)
                        except StepStoppedError as exc:
                            return number, str(exc), account
        return None, "", account


G_ON_DEMAND = ("aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA "
               "--desired-value 72")
G_SPOT = ("aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-3819A6DF "
          "--desired-value 248")
PREREQUISITES = {
    "dev": [G_ON_DEMAND, G_SPOT,
            "make ami FLAVOR=cuda", "make promote-ami FLAVOR=cuda CHANNEL=prod", "make webhook-secret STACK=dev",
            "make rotate-signing-key STACK=dev", "make api-key STACK=dev NAME=alice",
            "aws service-quotas request-service-quota-increase --service-code "
            "lambda --quota-code L-B99A9384 --desired-value 2500"],
}


def test_the_readme_lists_the_steps_in_the_order_they_are_needed():
    steps = readme_steps()
    assert [n for n, _, _ in steps] == list(range(1, len(steps) + 1))
    leading = {title: commands[0] for _, title, commands in steps if commands}
    order = [c for _, _, commands in steps for c in commands]
    for command in PREREQUISITES["dev"]:
        assert command in order, f"README step missing: {command}"
        assert order.index(command) < order.index("make preview-aws STACK=dev") < order.index("make up STACK=dev")
    assert leading["Install"] == "make install" and leading["Deploy"] == "make up STACK=dev"


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_complete_steps_preview_clean_under_the_policy_pack_with_the_stacks_budget(stack):
    stopped, message, account = run_steps(stack)
    assert stopped is None, message
    result = account.result
    budget = float(json.loads(stack_config(stack)[0]["genai-fleet:monthlyBudgetUsd"]))
    assert result.mandatory == [] and result.budget_usd == budget and result.estimate.max_usd <= budget
    images = {t.inputs["imageId"] for t in result.recording.of_type("aws:ec2/launchTemplate:LaunchTemplate")}
    assert images == {account.published[-1]}  # the image the AMI step published (dev) or promoted (prod)


def test_an_empty_account_stops_at_the_preview_naming_every_missing_step_in_order():
    with mock_aws():
        account = Account(boto3.session.Session(region_name="us-east-1"))
        with pytest.raises(StepStoppedError) as info:
            _preview(account, re.match(r"(\w+)", "dev"), "dev")
    message = str(info.value)
    assert "not ready for stack dev" in message
    positions = [message.index(c) for c in ("--quota-code L-3819A6DF --desired-value 12", "make ami FLAVOR=cuda",
                                            "make webhook-secret STACK=dev", "make rotate-signing-key STACK=dev",
                                            "make api-key STACK=dev")]
    assert positions == sorted(positions)


PREVIEW_STEP = next(n for n, _, commands in readme_steps() if commands[:1] == ["make preview-aws STACK=dev"])
AMI_STEP = next(n for n, _, commands in readme_steps() if "make ami FLAVOR=cuda" in commands)


@pytest.mark.parametrize(("stack", "skip", "stop_step", "named"), [
    ("dev", G_ON_DEMAND, AMI_STEP, "quota \"Running On-Demand G and VT instances\" (L-DB2E81BA) in us-east-1 is 0 "
                                   "vCPUs, below the 4"),
    ("dev", G_SPOT, PREVIEW_STEP, "--quota-code L-3819A6DF --desired-value 12"),
    ("prod", G_ON_DEMAND, AMI_STEP, "--quota-code L-DB2E81BA --desired-value 4"),
    ("prod", G_SPOT, PREVIEW_STEP, "--quota-code L-3819A6DF --desired-value 248"),
    ("dev", "make ami FLAVOR=cuda", PREVIEW_STEP, "run `make ami FLAVOR=cuda`"),
    ("dev", "make webhook-secret STACK=dev", PREVIEW_STEP, "run `make webhook-secret STACK=dev`"),
    ("dev", "make api-key STACK=dev NAME=alice", PREVIEW_STEP, "run `make api-key STACK=dev NAME=<who>`"),
    ("dev", "make rotate-signing-key STACK=dev", PREVIEW_STEP, "run `make rotate-signing-key STACK=dev`"),
    ("prod", "make ami FLAVOR=cuda", AMI_STEP, "build and check an image first (`make ami FLAVOR=cuda`)"),
    ("prod", "make promote-ami FLAVOR=cuda CHANNEL=prod", PREVIEW_STEP, "`make promote-ami FLAVOR=cuda CHANNEL=prod`"),
    ("prod", "make webhook-secret STACK=prod", PREVIEW_STEP, "run `make webhook-secret STACK=prod`"),
    ("prod", "make api-key STACK=prod NAME=alice", PREVIEW_STEP, "run `make api-key STACK=prod NAME=<who>`"),
    ("prod", "aws service-quotas request-service-quota-increase --service-code lambda --quota-code L-B99A9384 "
             "--desired-value 2500", PREVIEW_STEP, "request-service-quota-increase --region us-east-1 --service-code "
                                                   "lambda --quota-code L-B99A9384 --desired-value 2500"),
])
def test_a_missing_step_stops_the_deploy_naming_that_step(stack, skip, stop_step, named):
    stopped, message, _ = run_steps(stack, skip=skip)
    assert stopped == stop_step, message
    assert named in message
    if stopped == PREVIEW_STEP:
        assert message.count("\n  - ") == 1, f"only the skipped step is missing:\n{message}"


def test_dev_needs_no_quota_increase():
    skip = ("aws service-quotas request-service-quota-increase --service-code lambda --quota-code L-B99A9384 "
            "--desired-value 2500")
    stopped, message, account = run_steps("dev", skip=skip)
    assert stopped is None, message
    assert account.quota == 1000.0
