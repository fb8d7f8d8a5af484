"""The offline preview: dev and prod pass every mandatory rule; one changed setting makes it fail.

Rule-level checks take the dev recording, change one resource's inputs and re-run the policies, so they
hold whichever components the program declares today; where the program does not declare the resource
yet, a synthetic one shaped like the component's (``synthetic_fleet``) is added to the recording first.
"""

from __future__ import annotations

import copy
import json

import pytest
import yaml
from pulumi_policy import EnforcementLevel

from fleetdev.pulumi_mocks import ROOT, RecordedResource, Recording, run_stack
from genai_policies.cost import DEFAULT_ALLOWED_TYPES
from tests.unit._policy_helpers import synthetic_fleet
from tools import preview

GROUP = "aws:autoscaling/group:Group"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"


def _dev() -> Recording:
    """A private copy of the dev recording (run_stack caches the object) with the resources the checks need."""
    recording = copy.deepcopy(run_stack("dev"))
    present = recording.types()
    for res in synthetic_fleet():
        if res.type not in present:
            recording.resources.append(res)
    return recording


def _first(recording: Recording, type_token: str) -> RecordedResource:
    return recording.of_type(type_token)[0]


def _evaluate(recording: Recording, extra: dict | None = None) -> preview.PreviewResult:
    return preview.evaluate(recording, preview.merge_policy_config(preview.stack_policy_config("dev"), extra))


def _messages(result: preview.PreviewResult, policy: str, resource: RecordedResource | None = None) -> list[str]:
    return [v.message for v in result.by_policy(policy)
            if resource is None or v.resource == f"{resource.type} {resource.name}"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_passes_every_mandatory_rule(stack):
    result = preview.preview(stack)
    assert result.mandatory == [], "\n".join(f"{v.policy}: {v.resource}: {v.message}" for v in result.mandatory)
    assert result.estimate.max_usd <= result.budget_usd


def test_preview_prints_tree_policies_and_estimate(capsys):
    assert preview.main(["--stack", "dev"]) == 0
    out = capsys.readouterr().out
    for heading in ("Resources (", "pulumi:providers:aws aws", "Policies:", "Monthly cost estimate", "total"):
        assert heading in out
    assert "budget 1,500.00" in out


def test_dev_idles_under_40_dollars_every_line_has_a_basis_and_the_readme_quotes_it():
    est = preview.preview("dev").estimate
    assert est.min_usd <= 40.0
    assert all(item.note for item in est.items)
    lines = {item.item for item in est.items}
    assert {"EBS cluster-spot", "Public IPv4 (worker instances)", "VPC gateway endpoints", "CloudWatch Logs",
            "CloudWatch custom metrics", "CloudWatch alarms + dashboards"} <= lines
    readme = (ROOT / "README.md").read_text()
    assert f"idles at about\n**${est.min_usd:,.2f} a month**" in readme


def test_prod_estimate_counts_nat_gateways_and_their_addresses():
    est = {i.item: i for i in preview.preview("prod").estimate.items}
    assert est["NAT gateways"].note.startswith("3 x 730 h")
    assert est["Public IPv4 (Elastic IPs)"].min_usd == round(3 * 0.005 * 730, 2)
    assert "EBS warm pool cluster-ondemand" not in est  # removed from prod: docs/fleet.md "Warm pool"


def test_the_pr_workflow_installs_and_previews_as_the_readme_says():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "preview.yml").read_text())
    steps = workflow["jobs"]["preview"]["steps"]
    runs = [step.get("run", "").strip() for step in steps]
    assert runs.index("make install") < runs.index("make preview STACK=${{ matrix.stack }}") < runs.index(
        "make policy-config STACK=${{ matrix.stack }}")
    assert not any("pip install" in run for run in runs), "the README's install step, nothing else"
    (action,) = [step for step in steps if str(step.get("uses", "")).startswith("pulumi/actions")]
    assert action["with"]["policyPacks"] == "policies/"
    makefile = (ROOT / "Makefile").read_text()
    assert "POLICY_CONFIG = .build/policy-config.$(STACK).json" in makefile
    assert action["with"]["policyPackConfigs"] == ".build/policy-config.${{ matrix.stack }}.json"


def test_program_error_is_printed_and_exits_2(capsys):
    assert preview.main(["--stack", "dev", "--set", "maxSize=5000"]) == 2
    assert "genai-fleet:maxSize = 5000: must be an integer from 1 to 1000" in capsys.readouterr().err


def test_emit_policy_config_carries_the_stack_settings(tmp_path):
    out = tmp_path / "policy-config.json"
    assert preview.main(["--stack", "prod", "--emit-policy-config", str(out)]) == 0
    config = json.loads(out.read_text())
    assert config["monthly-cost-budget"] == {"monthlyBudgetUsd": 40000.0, "region": "us-east-1"}
    assert config["allowed-instance-types"] == {"flavor": "cuda"}


def test_instance_type_outside_the_list_fails():
    recording = _dev()
    template = _first(recording, LT)
    assert _messages(_evaluate(recording), "allowed-instance-types", template) == []
    template.inputs["instanceType"] = "p4d.24xlarge"
    result = _evaluate(recording)
    assert _messages(result, "allowed-instance-types", template) == [
        f"aws:ec2/launchTemplate:LaunchTemplate '{template.name}' uses instance type 'p4d.24xlarge', which is not "
        f"allowed for flavour cuda: use one of {', '.join(DEFAULT_ALLOWED_TYPES['cuda'])} (larger types need a cost "
        f"review and an allowedInstanceTypes entry in the policy config)."]
    assert any(v.policy == "allowed-instance-types" for v in result.mandatory)


def test_instance_types_outside_the_flavour_set_by_policy_config_fail():
    recording = _dev()
    result = _evaluate(recording, {"allowed-instance-types": {"flavor": "neuron"}})
    bad = [v for v in result.mandatory if v.policy == "allowed-instance-types"]
    assert bad and all("not allowed for flavour neuron: use one of inf2.xlarge, inf2.8xlarge" in v.message
                       for v in bad)


def test_public_bucket_fails():
    recording = _dev()
    block = _first(recording, PAB)
    assert not [m for m in _messages(_evaluate(recording), "s3-public-access-blocked") if block.name in m]
    block.inputs["blockPublicAcls"] = False
    block.outputs["blockPublicAcls"] = False
    assert f"public access block '{block.name}' leaves blockPublicAcls off: set all four flags to true; serve " \
           f"outputs through CloudFront origin access control instead." in \
           _messages(_evaluate(recording), "s3-public-access-blocked")


def test_max_size_500_fails():
    recording = _dev()
    group = _first(recording, GROUP)
    assert _messages(_evaluate(recording), "max-group-size", group) == []
    group.inputs["maxSize"] = 500
    group.outputs["maxSize"] = 500
    result = _evaluate(recording)
    assert _messages(result, "max-group-size", group) == [
        f"Auto Scaling group '{group.name}' has maxSize 500, above the cap of 20 for environment 'dev': lower "
        f"maxSize, or raise maxSizeByEnvironment in the policy config after a cost review."]
    assert [v.level for v in result.by_policy("monthly-cost-budget")] == [EnforcementLevel.MANDATORY]


def test_end_to_end_max_size_500_with_dev_cap_50(capsys, tmp_path):
    """Config accepts maxSize 500; the policy (cap 50 for dev, via policy config) rejects it."""
    cap = {"max-group-size": {"maxSizeByEnvironment": {"dev": 50}}}
    result = preview.preview("dev", {"maxSize": 500}, cap)
    groups = result.recording.of_type(GROUP)
    if groups:  # the program declares its groups: the real preview must fail on them
        assert any(v.policy == "max-group-size" and "above the cap of 50 for environment 'dev'" in v.message
                   for v in result.mandatory)
        config = tmp_path / "cap.json"
        config.write_text(json.dumps(cap))
        assert preview.main(["--stack", "dev", "--set", "maxSize=500", "--policy-config", str(config)]) == 1
        assert "max-group-size" in capsys.readouterr().out
    else:  # not wired yet: the same check on a synthetic group under the recorded provider
        recording = copy.deepcopy(result.recording)
        recording.resources += synthetic_fleet(max_size=500)
        evaluated = preview.evaluate(recording, preview.merge_policy_config(
            preview.stack_policy_config("dev", {"maxSize": 500}), cap))
        assert [v.message for v in evaluated.mandatory if v.policy == "max-group-size"] == [
            "Auto Scaling group 'fleet-spot' has maxSize 500, above the cap of 50 for environment 'dev': lower "
            "maxSize, or raise maxSizeByEnvironment in the policy config after a cost review."]


def test_pack_entry_point_builds_the_pack():
    """policies/__main__.py as the CLI runs it (cwd policies/); the server loop is cut short after start-up."""
    import subprocess
    import sys

    code = ("import runpy, pulumi_policy.policy as p\n"
            "def stop(_): raise KeyboardInterrupt\n"
            "p.time.sleep = stop\n"
            "runpy.run_path('__main__.py', run_name='__main__')\n"
            "print('built')\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=preview.ROOT / "policies", capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "built"
