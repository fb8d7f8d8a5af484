"""Every stack-config rule, with the exact message a user sees for a bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from components.config import ConfigError, load
from components.config_settings import NAMESPACE, SETTINGS
from fleetdev.pulumi_mocks import ROOT, stack_config

BASE = {"owner": "team-a", "costCenter": "cc-1"}


def problems(**values) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load({**BASE, **values}, stack="dev")
    return err.value.problems


def test_defaults_give_a_small_cheap_cuda_fleet():
    cfg = load(BASE, stack="dev")
    assert cfg.environment == "dev"
    assert cfg.region == "us-east-1"
    assert cfg.cluster.flavor == "cuda"
    assert cfg.cluster.instance_types == ("g6.xlarge", "g5.xlarge", "g6.2xlarge", "g5.2xlarge")
    assert cfg.cluster.backend == "comfyui"
    assert (cfg.cluster.min_size, cfg.cluster.max_size, cfg.cluster.on_demand_base) == (0, 4, 0)
    assert cfg.cluster.spot_share == 1.0
    assert cfg.queue.kind == "sqs"
    assert cfg.queue.visibility_timeout_seconds == 30 < cfg.queue.max_job_seconds  # a lease, renewed while a job runs
    assert cfg.api.auth == "api-key"
    assert cfg.tags.as_dict() == {"Project": "genai-fleet", "Environment": "dev", "Owner": "team-a",
                                  "CostCenter": "cc-1"}


def test_neuron_flavour_defaults_to_inf2_and_the_neuron_backend():
    cfg = load({**BASE, "amiFlavor": "neuron"}, stack="dev")
    assert cfg.cluster.instance_types == ("inf2.xlarge", "inf2.8xlarge")
    assert cfg.cluster.backend == "neuron"


def test_values_arrive_as_strings_from_the_engine_and_are_typed():
    cfg = load({**BASE, "minSize": "1", "maxSize": "5", "spotShare": "0.5", "pointInTimeRecovery": "true",
                "instanceTypes": '["g5.xlarge"]', "hotModels": '["sdxl/base-1.0"]'}, stack="prod")
    assert (cfg.cluster.min_size, cfg.cluster.max_size, cfg.cluster.spot_share) == (1, 5, 0.5)
    assert cfg.storage.point_in_time_recovery is True
    assert cfg.cluster.instance_types == ("g5.xlarge",)
    assert cfg.cluster.hot_models == ("sdxl/base-1.0",)
    assert cfg.is_production


def test_backlog_target_is_acceptable_wait_over_job_time():
    cfg = load({**BASE, "averageJobSeconds": 2.5, "acceptableWaitSeconds": 20}, stack="dev")
    assert cfg.cluster.backlog_per_instance_target == 8.0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"maxSize": 2, "minSize": 3},
         "genai-fleet:maxSize = 2 is below genai-fleet:minSize = 3: set maxSize >= minSize"),
        ({"spotShare": 1.5}, "genai-fleet:spotShare = 1.5: must be a number from 0 to 1"),
        ({"spotShare": "half"}, "genai-fleet:spotShare = half: must be a number from 0 to 1"),
        ({"queueKind": "rabbitmq"}, "genai-fleet:queueKind = rabbitmq: must be one of sqs, kafka"),
        ({"amiFlavor": "rocm"}, "genai-fleet:amiFlavor = rocm: must be one of cuda, neuron"),
        ({"instanceTypes": ["g5.xlarge", "inf2.xlarge"]},
         "genai-fleet:instanceTypes contains 'inf2.xlarge', which does not fit amiFlavor 'cuda': use types of "
         "the families g4dn, g5, g6, g6e, gr6, p3, p4d, p4de, p5, p5e"),
        ({"amiFlavor": "neuron", "instanceTypes": ["g5.xlarge"]},
         "genai-fleet:instanceTypes contains 'g5.xlarge', which does not fit amiFlavor 'neuron': use types of "
         "the families inf2, trn1, trn1n"),
        ({"instanceTypes": []}, "genai-fleet:instanceTypes = []: must list at least one instance type"),
        ({"instanceTypes": ["g5.xlarge", "g5.xlarge"]},
         "genai-fleet:instanceTypes lists a type twice: list each type once"),
        ({"instanceTypes": "g5.xlarge"},
         'genai-fleet:instanceTypes = g5.xlarge: must be a list of strings, e.g. ["a", "b"]'),
        ({"onDemandBase": 5, "maxSize": 4},
         "genai-fleet:onDemandBase = 5 is above genai-fleet:maxSize = 4: set onDemandBase <= maxSize"),
        ({"warmPoolSize": 2},
         "genai-fleet:warmPoolSize = 2 needs an on-demand base group: set onDemandBase >= 1 (AWS does not allow "
         "warm pools on spot or mixed-instances groups) or warmPoolSize = 0"),
        ({"minSize": -1}, "genai-fleet:minSize = -1: must be an integer from 0 to 1000"),
        ({"maxSize": 0}, "genai-fleet:maxSize = 0: must be an integer from 1 to 1000"),
        ({"maxSize": 2.5}, "genai-fleet:maxSize = 2.5: must be an integer from 1 to 1000"),
        ({"backend": "neuron"},
         "genai-fleet:backend = 'neuron': amiFlavor 'cuda' cannot run it; use one of comfyui, a1111, "
         "diffusers, test-pattern"),
        ({"backends": ["comfyui", "a1111"]},
         "genai-fleet:backends is no longer a setting; use genai-fleet:backend: each instance runs exactly one "
         "backend (the AMI installs it), so set one, e.g. genai-fleet:backend: comfyui"),
        ({"hotModels": ["SDXL Base"]},
         "genai-fleet:hotModels contains 'SDXL Base': model ids are lowercase 'name' or 'family/name' of letters, "
         "digits, '.', '_' and '-'"),
        ({"maxJobSeconds": 5}, "genai-fleet:maxJobSeconds = 5: must be an integer from 10 to 3600"),
        ({"averageJobSeconds": 400, "maxJobSeconds": 300},
         "genai-fleet:averageJobSeconds = 400 is above genai-fleet:maxJobSeconds = 300: set averageJobSeconds <= "
         "maxJobSeconds"),
        ({"acceptableWaitSeconds": 2, "averageJobSeconds": 3},
         "genai-fleet:acceptableWaitSeconds = 2 is below genai-fleet:averageJobSeconds = 3: a backlog target "
         "below one job per instance never scales in; raise it"),
        ({"outputRetentionDays": 0}, "genai-fleet:outputRetentionDays = 0: must be an integer from 1 to 3650"),
        ({"logRetentionDays": 10},
         "genai-fleet:logRetentionDays = 10: must be one of 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, "
         "545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653"),
        ({"monthlyBudgetUsd": 0}, "genai-fleet:monthlyBudgetUsd = 0: must be a number from 1 to 1e+07"),
        ({"apiAuth": "basic"}, "genai-fleet:apiAuth = basic: must be one of api-key, iam"),
        ({"apiRateLimit": 100, "apiBurstLimit": 50},
         "genai-fleet:apiBurstLimit = 50 is below genai-fleet:apiRateLimit = 100: set apiBurstLimit >= "
         "apiRateLimit"),
        ({"pointInTimeRecovery": "yes"}, "genai-fleet:pointInTimeRecovery = yes: must be true or false"),
        ({"spotAllocationStrategy": "lowest-price"},
         "genai-fleet:spotAllocationStrategy = lowest-price: must be one of price-capacity-optimized, "
         "capacity-optimized"),
        ({"natGateways": "both"}, "genai-fleet:natGateways = both: must be one of none, single, per-az"),
        ({"natGateways": "none", "queueKind": "kafka"},
         "genai-fleet:natGateways = none does not work with genai-fleet:queueKind = kafka: the API function runs in "
         "the VPC to reach MSK and needs a NAT gateway for SSM; set natGateways: single"),
        ({"apiHandlerConcurrency": 500},
         "genai-fleet:apiHandlerConcurrency = 500 is below what the API can hold at once: apiBurstLimit + "
         "apiRateLimit x apiMaxWaitSeconds = 200 + 100 x 20 = 2200: raise apiHandlerConcurrency to 2200, or lower "
         "apiMaxWaitSeconds to 3 (longer waits get 202 and a status URL), or lower apiRateLimit / apiBurstLimit"),
        ({"apiAuthorizerConcurrency": 50},
         "genai-fleet:apiAuthorizerConcurrency = 50 is below apiBurstLimit = 200, the requests API Gateway admits "
         "at once: raise apiAuthorizerConcurrency to 200 or lower apiBurstLimit"),
        ({"apiMaxWaitSeconds": 30}, "genai-fleet:apiMaxWaitSeconds = 30: must be an integer from 0 to 25"),
        ({"amiChannel": "Prod!"},
         "genai-fleet:amiChannel = Prod!: must be 2-32 characters: lowercase letters, digits, '-', starting with "
         "a letter"),
        ({"vpcCidr": "10.0.0.0/8"},
         "genai-fleet:vpcCidr = 10.0.0.0/8: must be an IPv4 CIDR with a prefix length from /16 to /24"),
        ({"amiId": "ubuntu"}, "genai-fleet:amiId = ubuntu: must be an AMI id like ami-0123456789abcdef0"),
        ({"existingVpcId": "vpc-0123456789abcdef0"},
         "genai-fleet:existingVpcId is set but genai-fleet:existingPrivateSubnetIds lists 0 subnets: list at least "
         "two, in different AZs"),
        ({"existingPrivateSubnetIds": ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]},
         "genai-fleet:existingPrivateSubnetIds is set without genai-fleet:existingVpcId: set both or neither"),
        ({"existingVpcId": "vpc-0123456789abcdef0", "existingPrivateSubnetIds": ["subnet-1", "subnet-0123456789ab"]},
         "genai-fleet:existingPrivateSubnetIds contains 'subnet-1': must be subnet ids like "
         "subnet-0123456789abcdef0"),
        ({"alarmEmail": "ops@example.com"},
         "genai-fleet:alarmEmail is set but genai-fleet:alarmsEnabled is false: set alarmsEnabled: true or remove "
         "alarmEmail"),
        ({"alarmEmail": "not-an-address", "alarmsEnabled": True},
         "genai-fleet:alarmEmail = not-an-address: must be an e-mail address"),
        # issue 43: the old private-outputs settings name what replaced them
        ({"privateOutputs": True},
         "genai-fleet:privateOutputs is no longer a setting; use genai-fleet:outputAccess: signed (the default) "
         "serves outputs through expiring signed URLs; outputAccess: public hands out plain links"),
        ({"outputsSigningPublicKey": "-----BEGIN PUBLIC KEY-----"},
         "genai-fleet:outputsSigningPublicKey is no longer a setting; use genai-fleet:outputSigningKeys: the names "
         "of the key pairs `genai-stack rotate-signing-key` creates (their public halves are read from SSM)"),
        ({"outputAccess": "private"}, "genai-fleet:outputAccess = private: must be one of public, signed"),
        ({"outputUrlTtlSeconds": 30}, "genai-fleet:outputUrlTtlSeconds = 30: must be an integer from 60 to 604800"),
        ({"outputSigningKeys": ["k1", "k2", "k3"]},
         "genai-fleet:outputSigningKeys = ['k1', 'k2', 'k3']: list one key name, or two different ones during a "
         "rotation (genai-stack rotate-signing-key)"),
        ({"outputSigningKeys": ["K 1"]},
         "genai-fleet:outputSigningKeys contains 'K 1': key names are 1-32 lowercase letters, digits and '-'"),
        ({"outputSigningKey": "k2"},
         "genai-fleet:outputSigningKey = 'k2' is not in outputSigningKeys ['k1']: sign with a key of the key group"),
        ({"gpuUtilizationTarget": 5}, "genai-fleet:gpuUtilizationTarget = 5: must be an integer from 10 to 100"),
        ({"availabilityZoneCount": 1}, "genai-fleet:availabilityZoneCount = 1: must be an integer from 2 to 6"),
        ({"maxReceiveCount": 0}, "genai-fleet:maxReceiveCount = 0: must be an integer from 1 to 20"),
        ({"environment": "Prod!"},
         "genai-fleet:environment = Prod!: must be 2-16 characters: lowercase letters, digits, '-', starting with a "
         "letter"),
        ({"minsize": 1}, "genai-fleet:minsize is not a known setting; did you mean genai-fleet:minSize?"),
        ({"fooBar": 1}, "genai-fleet:fooBar is not a known setting; see the configuration reference in README.md"),
    ],
)
def test_each_bad_value_is_named_with_what_is_allowed(values, message):
    assert message in problems(**values)


def test_required_tags_must_be_set():
    with pytest.raises(ConfigError) as err:
        load({}, stack="dev")
    assert err.value.problems == [
        "genai-fleet:owner is not set: it is required for the Owner tag; run `pulumi config set owner <value>`",
        "genai-fleet:costCenter is not set: it is required for the CostCenter tag; run "
        "`pulumi config set costCenter <value>`",
    ]


def test_bad_region_and_stack_name():
    with pytest.raises(ConfigError) as err:
        load(BASE, stack="My_Stack", region="mars-1")
    assert err.value.problems == [
        "aws:region = 'mars-1': must be an AWS region name like us-east-1",
        "stack name 'My_Stack' cannot be the environment name: set genai-fleet:environment (2-16 characters: "
        "lowercase letters, digits, '-', starting with a letter)",
    ]


def test_all_problems_are_reported_at_once():
    found = problems(spotShare=1.5, queueKind="rabbitmq", maxSize=1, minSize=2)
    assert len(found) == 3
    assert str(ConfigError(found)).startswith("invalid stack configuration:\n  - ")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_load(stack):
    values, region = stack_config(stack)
    prefix = NAMESPACE + ":"
    cfg = load({k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}, stack=stack, region=region)
    assert cfg.environment == stack


def test_dev_is_small_and_spot_only_and_prod_has_a_protected_base():
    def cfg_of(stack):
        values, region = stack_config(stack)
        return load({k.split(":", 1)[1]: v for k, v in values.items() if k.startswith("genai-fleet:")},
                    stack=stack, region=region)

    dev, prod = cfg_of("dev"), cfg_of("prod")
    assert dev.cluster.min_size == 0 and dev.cluster.on_demand_base == 0 and dev.cluster.spot_share == 1.0
    # Prod's base group is fixed-size: a warm pool there never serves a scale-out (docs/fleet.md, "Warm pool").
    assert prod.cluster.on_demand_base >= 1 and prod.cluster.warm_pool_size == 0
    assert prod.cluster.max_size > dev.cluster.max_size
    assert prod.storage.output_retention_days > dev.storage.output_retention_days
    assert prod.storage.point_in_time_recovery and not dev.storage.point_in_time_recovery
    assert prod.monitoring.alarms_enabled and not dev.monitoring.alarms_enabled
    # Dev has no NAT gateway (its idle cost); prod keeps its workers private behind one NAT per zone.
    assert prod.network.nat_gateways == "per-az" and dev.network.nat_gateways == "none"
    # Dev follows the AMI every checked build publishes; prod only what `make promote-ami` promoted.
    assert dev.cluster.ami_parameter == "/genai-fleet/ami/cuda/latest"
    assert prod.cluster.ami_parameter == "/genai-fleet/ami/cuda/prod"


def test_api_concurrency_defaults_to_what_rate_burst_and_wait_need():
    cfg = load({"owner": "o", "costCenter": "c", "apiRateLimit": 20, "apiBurstLimit": 40, "apiMaxWaitSeconds": 20},
               stack="dev")
    assert (cfg.api.reserved_handler, cfg.api.reserved_authorizer) == (40 + 20 * 20, 40)
    assert cfg.api.account_concurrency_needed == 440 + 40 + 100
    iam = load({"owner": "o", "costCenter": "c", "apiAuth": "iam", "apiMaxWaitSeconds": 0}, stack="dev")
    assert (iam.api.reserved_handler, iam.api.reserved_authorizer) == (200 + 100 * 1, None)
    explicit = load({"owner": "o", "costCenter": "c", "apiMaxWaitSeconds": 3, "apiHandlerConcurrency": 500},
                    stack="dev")
    assert explicit.api.reserved_handler == 500  # 200 + 100 x 3 fits exactly


def test_ami_channel_defaults_by_environment_and_can_be_set():
    base = {"owner": "o", "costCenter": "c"}
    assert load(base, stack="staging").cluster.ami_parameter == "/genai-fleet/ami/cuda/latest"
    assert load(base, stack="prod-eu").cluster.ami_parameter == "/genai-fleet/ami/cuda/prod-eu"
    assert load({**base, "amiChannel": "canary", "amiFlavor": "neuron"}, stack="dev").cluster.ami_parameter == (
        "/genai-fleet/ami/neuron/canary")


def test_config_reference_and_pulumi_yaml_are_in_sync_with_the_code():
    proc = subprocess.run([sys.executable, "tools/config_docs.py", "--check"], cwd=ROOT, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr
    readme = (ROOT / "README.md").read_text()
    for setting in SETTINGS:
        assert f"`genai-fleet:{setting.key}`" in readme
