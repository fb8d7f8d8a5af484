"""EC2 vCPU quotas: the need a stack's groups have of each quota, and the preview stopping when the account lacks it."""

from __future__ import annotations

import pytest

from components import vcpu_quotas
from components.prerequisites import AccountFacts, missing, vcpu_needs
from fleetdev.pulumi_mocks import MockAccount, ProgramError, run_stack
from tests.unit.component_harness import fleet, stack_fleet

# DescribeInstanceTypes' DefaultVCpus (moto's copy of EC2's data answers the same; see the mock test below).
VCPUS = {"g4dn.xlarge": 4, "g5.xlarge": 4, "g6.xlarge": 4, "g5.2xlarge": 8, "g6.2xlarge": 8, "inf2.xlarge": 4,
         "inf2.8xlarge": 32, "p4d.24xlarge": 96, "p5.48xlarge": 192}
G_OD, G_SPOT = "L-DB2E81BA", "L-3819A6DF"
INF_OD, INF_SPOT = "L-1945791B", "L-B5D1601B"


def _needs(cfg) -> dict[tuple[str, str], int]:
    return {(n.quota.code, n.market): n.vcpus for n in vcpu_needs(cfg, VCPUS)}


def test_dev_runs_only_spot_g_instances():
    # maxSize 3, onDemandBase 0, spotShare 1.0: three spot instances of the largest type (4 vCPUs).
    assert _needs(stack_fleet("dev")) == {(G_SPOT, "spot"): 12}


def test_prod_splits_on_demand_and_spot_at_max_size():
    # onDemandBase 2 x g6.xlarge = 8; above the base 38 instances, 20 % on demand: ceil(7.6) = 8 and
    # ceil(30.4) = 31, each possibly the largest type (8 vCPUs).
    assert _needs(stack_fleet("prod")) == {(G_OD, "on-demand"): 8 + 8 * 8, (G_SPOT, "spot"): 31 * 8}


def test_neuron_draws_on_the_inf_quotas():
    cfg = fleet(amiFlavor="neuron", maxSize=4, onDemandBase=1, spotShare=0.5)
    # base: 1 x inf2.xlarge = 4; above: 3 instances, 50 %: ceil(1.5) = 2 each way x 32 (inf2.8xlarge).
    assert _needs(cfg) == {(INF_OD, "on-demand"): 4 + 2 * 32, (INF_SPOT, "spot"): 2 * 32}


def test_p4d_and_p5_share_the_on_demand_quota_but_not_the_spot_one():
    needs = vcpu_quotas.stack_needs(["p4d.24xlarge", "p5.48xlarge"], VCPUS, max_size=2, on_demand_base=0,
                                    on_demand_percent=50)
    got = {(n.quota.code, n.market): n.vcpus for n in needs}
    assert got == {("L-417A185B", "on-demand"): 192, ("L-7212CCBC", "spot"): 96, ("L-C4BD4855", "spot"): 192}


def test_an_unknown_family_is_named():
    with pytest.raises(vcpu_quotas.UnknownInstanceFamilyError, match=r"m7i\.large .*FAMILY_CLASS"):
        vcpu_quotas.quota_for("m7i.large", "spot")


def test_every_family_a_stack_or_an_ami_build_may_use_has_quotas():
    from components.config_settings import FLAVOR_FAMILIES

    families = {f for fams in FLAVOR_FAMILIES.values() for f in fams} | {"trn2"}  # trn2: neuron build type
    assert families <= set(vcpu_quotas.FAMILY_CLASS)


def test_the_shortfall_names_the_quota_the_need_and_the_request():
    cfg = stack_fleet("prod")
    facts = AccountFacts(True, True, 3, 2500.0, instance_vcpus=VCPUS,
                         vcpu_quota_values={G_OD: 64.0, G_SPOT: 0.0})
    assert missing(cfg, facts) == [
        'the EC2 quota "Running On-Demand G and VT instances" (L-DB2E81BA) in us-east-1 is 64 vCPUs, below the 72 '
        "the on-demand instances need (onDemandBase 2 x 4 vCPUs (g6.xlarge) + 8 on-demand instance(s) above the "
        "base x 8 vCPUs (g6.2xlarge, the largest type)): request 72 with `aws service-quotas "
        "request-service-quota-increase --region us-east-1 --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 72` or at https://us-east-1.console.aws.amazon.com/servicequotas/home/services/ec2/quotas/"
        "L-DB2E81BA (instances already running count against it too)",
        'the EC2 quota "All G and VT Spot Instance Requests" (L-3819A6DF) in us-east-1 is 0 vCPUs, below the 248 '
        "the spot instances need (31 spot instance(s) above the base x 8 vCPUs (g6.2xlarge, the largest type)): "
        "request 248 with `aws service-quotas request-service-quota-increase --region us-east-1 --service-code ec2 "
        "--quota-code L-3819A6DF --desired-value 248` or at https://us-east-1.console.aws.amazon.com/servicequotas/"
        "home/services/ec2/quotas/L-3819A6DF (instances already running count against it too)"]


def test_enough_or_unreadable_quotas_pass():
    cfg = stack_fleet("prod")
    assert missing(cfg, AccountFacts(True, True, 3, 2500.0, instance_vcpus=VCPUS,
                                     vcpu_quota_values={G_OD: 72.0, G_SPOT: 248.0})) == []
    assert missing(cfg, AccountFacts(True, True, 3, 2500.0, instance_vcpus=VCPUS,
                                     vcpu_quota_values={G_OD: None, G_SPOT: None})) == []


# --- the program under mocks (the offline preview) ---------------------------------------------------
def _ready_account(**quotas: float) -> MockAccount:
    return MockAccount(parameters={"/genai-fleet/ami/cuda/latest": "ami-0123456789abcdef0",
                                   "/genai-fleet/ami/neuron/latest": "ami-0123456789abcdef0",
                                   "/genai-fleet/dev/webhook-secret": "x", "/genai-fleet/dev/api-keys/k1": "{}",
                                   "/genai-fleet/dev/output-signing-keys/k1/public": "pem"},  # issue 43
                       lambda_concurrency_quota=1000.0, ec2_vcpu_quotas=dict(quotas))


def test_the_preview_stops_when_the_account_has_no_gpu_quota():
    with pytest.raises(ProgramError) as info:
        run_stack("dev", account=_ready_account())
    message = str(info.value)
    assert message.startswith("PrerequisiteError: the AWS account is not ready for stack dev")
    assert '"All G and VT Spot Instance Requests" (L-3819A6DF) in us-east-1 is 0 vCPUs, below the 12' in message
    assert "--quota-code L-3819A6DF --desired-value 12" in message
    assert "L-DB2E81BA" not in message  # dev runs no on-demand instance


def test_the_preview_asks_for_the_inf_quotas_on_a_neuron_stack():
    with pytest.raises(ProgramError) as info:
        run_stack("dev", {"amiFlavor": "neuron", "instanceTypes": None, "backend": None, "hotModels": None},
                  account=_ready_account())
    assert '"All Inf Spot Instance Requests" (L-B5D1601B) in us-east-1 is 0 vCPUs, below the 96' in str(info.value)


def test_the_preview_passes_with_the_quotas_it_asked_for():
    recording = run_stack("dev", account=_ready_account(**{G_SPOT: 12.0}))
    reads = [c["args"] for c in recording.calls if c["token"] == "aws:servicequotas/getServiceQuota:getServiceQuota"]
    assert {"serviceCode": "ec2", "quotaCode": G_SPOT} in [{k: r[k] for k in ("serviceCode", "quotaCode")}
                                                           for r in reads]
    types = sorted(c["args"]["instanceType"] for c in recording.calls
                   if c["token"] == "aws:ec2/getInstanceType:getInstanceType")
    assert types == ["g4dn.xlarge", "g5.xlarge", "g6.xlarge"]


def test_the_mock_answers_vcpus_from_ec2_data():
    from fleetdev.pulumi_mocks import _instance_type

    assert {t: _instance_type(t)["defaultVcpus"] for t in VCPUS} == VCPUS
    with pytest.raises(ValueError, match="InvalidInstanceType"):
        _instance_type("g9.huge")
