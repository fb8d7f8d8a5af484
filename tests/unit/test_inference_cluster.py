"""InferenceCluster under the recording mocks: launch hardening, groups, hooks, scaling, flavours."""

from __future__ import annotations

import base64
import json
import math
import re

import pulumi
import pytest

from components import scaling_plan, user_data
from components.inference_cluster import InferenceCluster, InferenceClusterArgs
from components.scaling_plan import on_demand_percentage
from fleetdev.pulumi_mocks import MOCK_AMI_ID
from runtime import agent_config
from tests.unit.component_harness import Built, build, each, fleet, kafka_endpoint, sqs_endpoint, stack_fleet

ACCT, REGION = "123456789012", "us-east-1"
LT = "aws:ec2/launchTemplate:LaunchTemplate"
ASG = "aws:autoscaling/group:Group"
POLICY = "aws:autoscaling/policy:Policy"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SQS_BACKLOG = {"namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
               "dimensions": {"QueueName": "genai-dev-jobs"}}
KAFKA_CLUSTER = f"arn:aws:kafka:{REGION}:{ACCT}:cluster/genai-dev-jobs/uuid-1"
OUTPUTS = ("spot_group_name", "on_demand_group_name", "group_names", "role_arn", "instance_profile_arn",
           "security_group_id", "ami_id")


def cluster_args(cfg, **extra) -> InferenceClusterArgs:
    queue = (sqs_endpoint(backlog_metric=pulumi.Output.from_input(SQS_BACKLOG)) if cfg.queue.kind == "sqs" else
             kafka_endpoint(cfg.stack, cluster_arn=KAFKA_CLUSTER, backlog_metric=pulumi.Output.from_input(
                 {"namespace": "GenAIFleet", "metric_name": "KafkaBacklog", "dimensions": {"Stack": cfg.stack}})))
    values = dict(
        stack=cfg.identity, cluster=cfg.cluster, queue_settings=cfg.queue, tags=cfg.tags,
        vpc_id="vpc-0a1b2c3d4e5f67890", private_subnet_ids=["subnet-aaaa1111", "subnet-bbbb2222"],
        queue=queue,
        model_store_bucket_name="genai-dev-models-x1", model_store_bucket_arn="arn:aws:s3:::genai-dev-models-x1",
        outputs_bucket_name="genai-dev-outputs-x1", outputs_bucket_arn="arn:aws:s3:::genai-dev-outputs-x1",
        cdn_domain="d111111abcdef8.cloudfront.net", job_table_name="genai-dev-jobs",
        job_table_arn=f"arn:aws:dynamodb:{REGION}:{ACCT}:table/genai-dev-jobs")
    values.update(extra)
    return InferenceClusterArgs(**values)


def make(cfg, **extra) -> Built:
    return build(lambda: InferenceCluster("cluster", cluster_args(cfg, **extra)), *OUTPUTS)


@pytest.fixture(scope="module")
def mixed() -> Built:
    """Spot + on-demand base with a warm pool, GPU target, hot models."""
    cfg = fleet(minSize=2, maxSize=6, onDemandBase=1, warmPoolSize=1, spotShare=0.7, gpuUtilizationTarget=70,
                hotModels='["sdxl/base-1.0", "flux/schnell"]', maxJobSeconds=600)
    return make(cfg)


@pytest.fixture(scope="module")
def spot_only() -> Built:
    return make(fleet())


@pytest.fixture(scope="module")
def neuron() -> Built:
    return make(fleet(amiFlavor="neuron", queueKind="kafka", gpuUtilizationTarget=60))


def user_data_of(lt) -> str:
    return base64.b64decode(lt.inputs["userData"]).decode()


def agent_json_of(lt) -> dict:
    script = user_data_of(lt)
    body = script.split(f"<<'{user_data._HEREDOC}'\n", 1)[1].split(f"\n{user_data._HEREDOC}\n", 1)[0]
    return json.loads(body)


def group(built: Built, suffix: str):
    return built.one(ASG, f"cluster-{suffix}")


# --- launch templates ------------------------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["mixed", "spot_only", "neuron"])
def test_imdsv2_required_everywhere(fixture, request):
    built = request.getfixturevalue(fixture)
    for lt in each(built, LT):
        meta = lt.inputs["metadataOptions"]
        assert meta["httpTokens"] == "required", lt.name
        assert meta["httpEndpoint"] == "enabled"
        assert meta["httpPutResponseHopLimit"] == 1


def test_launch_template_hardening(mixed):
    for lt in each(mixed, LT):
        root = lt.inputs["blockDeviceMappings"][0]
        assert root["ebs"]["volumeType"] == "gp3" and root["ebs"]["encrypted"] == "true"
        assert lt.inputs["monitoring"] == {"enabled": True}
        assert "keyName" not in lt.inputs
        assert lt.inputs["iamInstanceProfile"]["arn"].endswith(":instance-profile/cluster-profile")
        assert lt.inputs["imageId"] == MOCK_AMI_ID
        kinds = {spec["resourceType"]: spec["tags"] for spec in lt.inputs["tagSpecifications"]}
        assert set(kinds) == {"instance", "volume"}
        for tags in kinds.values():
            assert {"Project", "Environment", "Owner", "CostCenter"} <= set(tags)


def test_security_group_has_no_inbound_rules(mixed):
    (sg,) = mixed.of_type("aws:ec2/securityGroup:SecurityGroup")
    assert not sg.inputs.get("ingress")
    assert all(rule["fromPort"] == 443 for rule in sg.inputs["egress"])
    assert not mixed.of_type("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule")
    assert not [r for r in mixed.of_type("aws:ec2/securityGroupRule:SecurityGroupRule")
                if r.inputs.get("type") == "ingress"]


def test_user_data_only_writes_agent_config_and_starts_it(mixed):
    lt = mixed.one(LT, "cluster-spot-lt")
    script = user_data_of(lt)
    assert script.startswith("#!/bin/bash\n")
    commands = [line.strip() for line in script.splitlines() if line.strip() and not line.startswith("#")]
    assert not [c for c in commands if re.match(r"^(apt|apt-get|yum|dnf|pip|curl|wget)\b", c)]
    assert f"systemctl start --no-block {user_data.AGENT_SERVICE}" in commands
    assert "ssm:/genai-fleet/dev/cloudwatch-agent" in script
    parsed = agent_config.parse(agent_json_of(lt))
    assert parsed.queue.kind == "sqs" and parsed.queue.url.endswith("/genai-dev-jobs")
    assert parsed.outputs.cdn_base_url == "https://d111111abcdef8.cloudfront.net"
    assert parsed.model_cache.store_bucket == "genai-dev-models-x1"
    assert parsed.model_cache.cache_dir == user_data.NVME_CACHE_DIR
    assert parsed.lifecycle.launching_hook == scaling_plan.LAUNCHING_HOOK
    assert parsed.lifecycle.terminating_hook == scaling_plan.TERMINATING_HOOK
    assert parsed.hot_models == ("sdxl/base-1.0", "flux/schnell")
    # EMF records go to the log group the monitoring component creates (and the role may write to).
    assert parsed.metrics_log_group == "/genai-fleet/dev/metrics"
    assert parsed.max_job_seconds == 600 and parsed.backend == "comfyui" and parsed.backend_url


def test_warm_pool_group_keeps_models_on_ebs(mixed):
    lt = mixed.one(LT, "cluster-ondemand-lt")
    assert agent_json_of(lt)["model_cache"]["cache_dir"] == user_data.EBS_CACHE_DIR
    assert lt.inputs["instanceType"] == "g6.xlarge"
    assert "instanceType" not in mixed.one(LT, "cluster-spot-lt").inputs


# --- groups ----------------------------------------------------------------------------------------
def test_mixed_instances_policy_carries_types_and_spot_share(mixed):
    spot = group(mixed, "spot").inputs
    policy = spot["mixedInstancesPolicy"]
    dist = policy["instancesDistribution"]
    assert [o["instanceType"] for o in policy["launchTemplate"]["overrides"]] == [
        "g6.xlarge", "g5.xlarge", "g6.2xlarge", "g5.2xlarge"]
    assert dist["onDemandBaseCapacity"] == 0
    assert dist["onDemandPercentageAboveBaseCapacity"] == 30 == on_demand_percentage(0.7)
    assert dist["spotAllocationStrategy"] == "price-capacity-optimized"
    assert spot["capacityRebalance"] is True
    assert (spot["minSize"], spot["maxSize"]) == (1, 5)  # config minus the on-demand base
    assert "warmPool" not in spot


def test_warm_pool_only_on_the_on_demand_group(mixed, spot_only):
    od = group(mixed, "ondemand").inputs
    assert "mixedInstancesPolicy" not in od and od["launchTemplate"]["id"]
    assert od["minSize"] == od["maxSize"] == od["desiredCapacity"] == 1
    assert od["warmPool"]["poolState"] == "Stopped"
    assert od["warmPool"]["minSize"] == 1
    assert od["warmPool"]["instanceReusePolicy"] == {"reuseOnScaleIn": True}
    assert [g.name for g in spot_only.of_type(ASG)] == ["cluster-spot"]
    assert all("warmPool" not in g.inputs for g in each(spot_only, ASG))
    assert spot_only.outputs["on_demand_group_name"] is None


@pytest.mark.parametrize("fixture", ["mixed", "spot_only"])
def test_groups_propagate_stack_tags_and_publish_metrics(fixture, request):
    for g in each(request.getfixturevalue(fixture), ASG):
        tags = {t["key"]: t for t in g.inputs["tags"]}
        for key in ("Project", "Environment", "Owner", "CostCenter"):
            assert tags[key]["propagateAtLaunch"] is True
        assert "GroupInServiceInstances" in g.inputs["enabledMetrics"]
        assert g.inputs["metricsGranularity"] == "1Minute"
        assert g.inputs["vpcZoneIdentifiers"] == ["subnet-aaaa1111", "subnet-bbbb2222"]


def test_both_lifecycle_hooks_on_every_group(mixed):
    for g in each(mixed, ASG):
        hooks = {h["lifecycleTransition"]: h for h in g.inputs["initialLifecycleHooks"]}
        launching = hooks["autoscaling:EC2_INSTANCE_LAUNCHING"]
        terminating = hooks["autoscaling:EC2_INSTANCE_TERMINATING"]
        assert launching["defaultResult"] == "ABANDON"
        assert launching["heartbeatTimeout"] >= scaling_plan.BOOT_SECONDS + 2 * 60  # boot + two hot models
        assert terminating["defaultResult"] == "CONTINUE"
        assert terminating["heartbeatTimeout"] >= 600 + 60  # maxJobSeconds + margin
        assert {launching["name"], terminating["name"]} == {scaling_plan.LAUNCHING_HOOK,
                                                            scaling_plan.TERMINATING_HOOK}


HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
HOOK_FIELDS = ("name", "lifecycleTransition", "heartbeatTimeout", "defaultResult")


def _hook_resources(built: Built, group) -> dict[str, dict]:
    return {h.inputs["name"]: h.inputs for h in built.of_type(HOOK)
            if h.inputs["autoscalingGroupName"] == group.outputs["name"]}


def test_every_initial_hook_is_also_a_lifecycle_hook_resource_that_carries_changes(mixed):
    """The provider applies initial_lifecycle_hooks only when it creates a group: a same-named
    LifecycleHook resource per hook is what updates AWS when a heartbeat changes later."""
    for g in each(mixed, ASG):
        declared = {h["name"]: {k: h[k] for k in HOOK_FIELDS} for h in g.inputs["initialLifecycleHooks"]}
        resources = {n: {k: h[k] for k in HOOK_FIELDS} for n, h in _hook_resources(mixed, g).items()}
        assert resources == declared and len(resources) == 2, g.name


def test_a_longer_job_time_limit_reaches_the_hook_resources():
    before = make(fleet(maxJobSeconds=600))
    after = make(fleet(maxJobSeconds=1800))
    for built, limit in ((before, 600), (after, 1800)):
        (group,) = built.of_type(ASG)
        hook = _hook_resources(built, group)[scaling_plan.TERMINATING_HOOK]
        assert hook["heartbeatTimeout"] == limit + scaling_plan.DRAIN_MARGIN_SECONDS


def test_a_new_prod_group_s_first_instances_get_the_launching_hook():
    """prod starts on-demand instances with the group; a hook resource exists only after the group (it
    names the group's output), so the group's own create request must already carry the launching hook."""
    built = make(stack_fleet("prod"))
    (ondemand,) = [g for g in built.of_type(ASG) if g.name == "cluster-ondemand"]
    assert ondemand.inputs["desiredCapacity"] >= 2 and ondemand.inputs["minSize"] >= 2
    initial = {h["lifecycleTransition"]: h for h in ondemand.inputs["initialLifecycleHooks"]}
    launching = initial["autoscaling:EC2_INSTANCE_LAUNCHING"]
    assert launching["name"] == scaling_plan.LAUNCHING_HOOK and launching["defaultResult"] == "ABANDON"
    hook = _hook_resources(built, ondemand)[scaling_plan.LAUNCHING_HOOK]
    assert hook["autoscalingGroupName"] == ondemand.outputs["name"]  # created after the group, never instead


# --- scaling ---------------------------------------------------------------------------------------
def _metrics_by_id(policy) -> dict:
    spec = policy.inputs["targetTrackingConfiguration"]["customizedMetricSpecification"]
    return {m["id"]: m for m in spec["metrics"]}


def test_target_tracking_divides_backlog_by_in_service_instances(mixed):
    policy = mixed.one(POLICY, "cluster-spot-backlog-target")
    assert policy.inputs["autoscalingGroupName"] == "genai-dev-spot"
    assert policy.inputs["targetTrackingConfiguration"]["targetValue"] == 10.0  # 30 s / 3 s
    metrics = _metrics_by_id(policy)
    returned = [m for m in metrics.values() if m.get("returnData")]
    assert len(returned) == 1
    numerator, denominator = re.fullmatch(r"(\w+) / \((.+)\)", returned[0]["expression"]).groups()
    backlog = metrics[numerator]["metricStat"]["metric"]
    assert (backlog["namespace"], backlog["metricName"]) == ("AWS/SQS", "ApproximateNumberOfMessagesVisible")
    assert backlog["dimensions"] == [{"name": "QueueName", "value": "genai-dev-jobs"}]
    groups = set()
    for ref in denominator.split(" + "):
        metric = metrics[ref]["metricStat"]["metric"]
        assert (metric["namespace"], metric["metricName"]) == ("AWS/AutoScaling", "GroupInServiceInstances")
        groups.add(metric["dimensions"][0]["value"])
    assert groups == {"genai-dev-spot", "genai-dev-ondemand"}


def test_step_policy_takes_the_spot_group_from_zero(mixed, spot_only):
    for built, threshold in ((mixed, math.ceil(10.0 * 1)), (spot_only, 1)):
        step = built.one(POLICY, "cluster-spot-from-zero")
        assert step.inputs["policyType"] == "StepScaling"
        assert step.inputs["stepAdjustments"] == [{"metricIntervalLowerBound": "0", "scalingAdjustment": 1}]
        alarm = built.one(ALARM, "cluster-spot-from-zero")
        assert alarm.inputs["alarmActions"] == [step.outputs["arn"]]
        (expr,) = [q["expression"] for q in alarm.inputs["metricQueries"] if q.get("returnData")]
        assert "desired, 0) == 0" in expr and f"backlog >= {threshold}" in expr


def test_gpu_utilisation_target_only_when_configured(mixed, spot_only):
    spec = mixed.one(POLICY, "cluster-spot-utilization-target").inputs["targetTrackingConfiguration"]
    metric = spec["customizedMetricSpecification"]
    assert (metric["namespace"], metric["metricName"]) == ("CWAgent", "nvidia_smi_utilization_gpu")
    assert metric["metricDimensions"] == [{"name": "AutoScalingGroupName", "value": "genai-dev-spot"}]
    assert spec["targetValue"] == 70
    assert "cluster-spot-utilization-target" not in {p.name for p in spot_only.of_type(POLICY)}


# --- flavours, queue kinds, overrides --------------------------------------------------------------
def test_neuron_flavour_uses_inf2_and_the_neuron_ami(neuron):
    overrides = group(neuron, "spot").inputs["mixedInstancesPolicy"]["launchTemplate"]["overrides"]
    assert [o["instanceType"] for o in overrides] == ["inf2.xlarge", "inf2.8xlarge"]
    (lookup,) = [c for c in neuron.recording.calls if c["token"] == "aws:ec2/getAmi:getAmi"]
    filters = {f["name"]: f["values"] for f in lookup["args"]["filters"]}
    assert filters["tag:Flavor"] == ["neuron"] and filters["tag:Project"] == ["genai-fleet"]
    assert lookup["args"]["owners"] == ["self"] and lookup["args"]["mostRecent"] is True
    assert agent_json_of(neuron.one(LT, "cluster-spot-lt"))["backend"] == "neuron"
    metric = neuron.one(POLICY, "cluster-spot-utilization-target").inputs["targetTrackingConfiguration"][
        "customizedMetricSpecification"]
    assert (metric["namespace"], metric["metricName"]) == ("GenAIFleet/Neuron", "neuroncore_utilization")


def test_cuda_flavour_looks_up_the_cuda_ami(mixed):
    (lookup,) = [c for c in mixed.recording.calls if c["token"] == "aws:ec2/getAmi:getAmi"]
    assert {f["name"]: f["values"] for f in lookup["args"]["filters"]}["tag:Flavor"] == ["cuda"]


def test_kafka_queue_wiring(neuron):
    lt = neuron.one(LT, "cluster-spot-lt")
    assert "sg-kafkaclients" in lt.inputs["vpcSecurityGroupIds"]
    queue = agent_config.parse(agent_json_of(lt)).queue
    assert (queue.kind, queue.bootstrap_servers, queue.url) == ("kafka", "boot-abc.kafka:9098", None)
    backlog = _metrics_by_id(neuron.one(POLICY, "cluster-spot-backlog-target"))["backlog"]["metricStat"]["metric"]
    assert (backlog["namespace"], backlog["metricName"]) == ("GenAIFleet", "KafkaBacklog")


def test_pinned_ami_skips_the_lookup():
    built = make(fleet(amiId="ami-0fedcba9876543210"))
    assert not [c for c in built.recording.calls if c["token"] == "aws:ec2/getAmi:getAmi"]
    assert {lt.inputs["imageId"] for lt in built.of_type(LT)} == {"ami-0fedcba9876543210"}
    assert built.outputs["ami_id"] == "ami-0fedcba9876543210"


def test_outputs_consumers_need(mixed):
    out = mixed.outputs
    assert out["group_names"] == ["genai-dev-spot", "genai-dev-ondemand"]
    assert out["role_arn"] == f"arn:aws:iam::{ACCT}:role/cluster-role"
    assert out["security_group_id"].startswith("sg-") and out["ami_id"] == MOCK_AMI_ID
    component = mixed.one("genai:cluster:InferenceCluster")
    assert all(r.parent == component.urn for r in mixed.recording.resources if r is not component)


def test_a_queue_of_the_wrong_kind_fails_early():
    cfg = fleet()
    args = cluster_args(cfg, queue=kafka_endpoint())
    with pytest.raises(ValueError, match=r"InferenceClusterArgs\.queue is a kafka endpoint but queueKind is sqs"):
        build(lambda: InferenceCluster("cluster", args))


# --- pure helpers ----------------------------------------------------------------------------------
def test_agent_config_is_validated_by_the_agents_parser():
    settings = user_data.AgentSettings(
        stack="dev", region=REGION, queue_kind="sqs", job_table="t", outputs_bucket="b", cdn_domain="d.example",
        model_store_bucket="m", backend="comfyui", launching_hook="l", terminating_hook="t",
        cache_dir=user_data.NVME_CACHE_DIR, max_cache_bytes=1, max_job_seconds=5, max_receive_count=3,
        visibility_timeout_seconds=65, queue_url="https://sqs/q")
    with pytest.raises(agent_config.AgentConfigError, match="max_job_seconds"):
        user_data.agent_config_json(settings)


def test_heartbeats_stay_within_auto_scaling_limits():
    cfg = fleet(maxJobSeconds=3600, hotModels=json.dumps([f"m{i}" for i in range(60)]))
    assert scaling_plan.terminating_heartbeat(cfg.queue) == 3600 + scaling_plan.DRAIN_MARGIN_SECONDS
    assert scaling_plan.launching_heartbeat(cfg.cluster) == scaling_plan.MAX_HEARTBEAT_SECONDS


@pytest.mark.parametrize(("share", "pct"), [(1.0, 0), (0.0, 100), (0.7, 30), (0.333, 67)])
def test_on_demand_percentage(share, pct):
    assert on_demand_percentage(share) == pct


def test_model_groups_reach_the_agent_config_and_the_role_policy():
    from components.queue_endpoint import SqsGroupQueue
    from tests.unit.component_harness import sqs_endpoint

    cfg = fleet(modelGroups='{"sdxl": ["sdxl/base-1.0"], "flux": ["flux/dev"]}')
    base = "https://sqs.us-east-1.amazonaws.com/123456789012/genai-dev-jobs-"
    groups = tuple(SqsGroupQueue(group=g, models=m, queue_url=f"{base}{g}",
                                 queue_arn=f"arn:aws:sqs:us-east-1:123456789012:genai-dev-jobs-{g}",
                                 queue_name=f"genai-dev-jobs-{g}") for g, m in cfg.queue.model_groups)
    built = make(cfg, queue=sqs_endpoint(backlog_metric=pulumi.Output.from_input(SQS_BACKLOG), groups=groups))
    agent = agent_config.parse(agent_json_of(built.of_type(LT)[0]))
    assert [(g.name, g.models, g.url) for g in agent.queue.groups] == [
        ("sdxl", ("sdxl/base-1.0",), f"{base}sdxl"), ("flux", ("flux/dev",), f"{base}flux")]
    policy = json.loads(built.one("aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    (consume,) = [st for st in policy["Statement"] if st["Sid"] == "ConsumeJobQueue"]
    assert consume["Resource"] == ["arn:aws:sqs:us-east-1:123456789012:genai-dev-jobs",
                                   *(g.queue_arn for g in groups)]
