"""Monitoring under the recording mocks: agent config, logs, dashboard, alarms, spot event records."""

from __future__ import annotations

import json
import re

import pytest

from components import cluster_scaling
from components.monitoring import (
    Monitoring,
    MonitoringArgs,
    agent_parameter_name,
    cloudwatch_agent_config,
    log_group_names,
    spot_events_log_group_name,
)
from components.monitoring_dashboard import fleet_dimensions
from runtime import metric_names
from tests.unit.component_harness import Built, build, each, fleet, kafka_endpoint, sqs_endpoint


def slices(cfg) -> dict:
    """The config slices ``__main__.py`` hands the monitoring component."""
    return {"stack": cfg.identity, "monitoring": cfg.monitoring, "storage": cfg.storage, "cluster": cfg.cluster,
            "queue_settings": cfg.queue}

ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
OUTPUTS = ("dashboard_name", "dashboard_url", "alarm_topic_arn", "log_group_names", "agent_parameter_name")
SQS_BACKLOG = {"namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
               "dimensions": {"QueueName": "genai-dev-jobs"}}


@pytest.fixture(scope="module")
def alarmed() -> Built:
    cfg = fleet(alarmsEnabled=True, alarmEmail="oncall@example.com", onDemandBase=1, warmPoolSize=1,
                gpuUtilizationTarget=70, logRetentionDays=30)
    args = MonitoringArgs(**slices(cfg), queue=sqs_endpoint(backlog_metric=SQS_BACKLOG),
                          spot_group_name="cluster-spot-1a2b", on_demand_group_name="cluster-ondemand-3c4d",
                          api_id="abc123")
    return build(lambda: Monitoring("monitoring", args), *OUTPUTS)


@pytest.fixture(scope="module")
def quiet() -> Built:
    """Defaults: alarms off; neuron on Kafka, spot group only, no API."""
    cfg = fleet(amiFlavor="neuron", queueKind="kafka")
    backlog = {"namespace": metric_names.NAMESPACE, "metric_name": metric_names.KAFKA_BACKLOG,
               "dimensions": {metric_names.DIM_STACK: "dev"}}
    args = MonitoringArgs(**slices(cfg), queue=kafka_endpoint(backlog_metric=backlog),
                          spot_group_name="cluster-spot-1a2b")
    return build(lambda: Monitoring("monitoring", args), *OUTPUTS)


def dashboard(built: Built) -> dict:
    return json.loads(built.one("aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])


def dashboard_metrics(body: dict) -> list[tuple[str, str, dict]]:
    """(namespace, metric, dimensions) of every metric row; expressions are checked separately."""
    rows = []
    for widget in body["widgets"]:
        for row in widget["properties"]["metrics"]:
            if isinstance(row[0], dict):
                continue
            plain = [x for x in row if not isinstance(x, dict)]
            assert "..." not in plain and "." not in plain, "write rows in full so they can be checked"
            rows.append((plain[0], plain[1], dict(zip(plain[2::2], plain[3::2], strict=True))))
    return rows


def alarm_metrics(built: Built) -> list[tuple[str, str, dict]]:
    found = []
    for alarm in each(built, ALARM):
        if alarm.inputs.get("metricName"):
            found.append((alarm.inputs["namespace"], alarm.inputs["metricName"], alarm.inputs.get("dimensions", {})))
        for query in alarm.inputs.get("metricQueries", []):
            if "metric" in query:
                m = query["metric"]
                found.append((m["namespace"], m["metricName"], m.get("dimensions", {})))
    return found


# --- metric names are the runtime's -----------------------------------------------------------------
@pytest.mark.parametrize("fixture", ["alarmed", "quiet"])
def test_dashboard_uses_only_metrics_the_runtime_emits(fixture, request):
    rows = dashboard_metrics(dashboard(request.getfixturevalue(fixture)))
    custom = [(name, dims) for ns, name, dims in rows if ns == metric_names.NAMESPACE]
    assert custom
    args = request.getfixturevalue(fixture).component._args
    for name, dims in custom:
        assert name in metric_names.ALL, name
        if name == metric_names.KAFKA_BACKLOG:  # the queue's metric: its dimensions come with backlog_metric
            continue
        # the worker emits {Stack, AutoScalingGroupName} and {Stack, Backend} (runtime/worker/metrics.py)
        assert dims == fleet_dimensions(args.stack, args.cluster) == {metric_names.DIM_STACK: args.stack.stack,
                                                                      metric_names.DIM_BACKEND: args.cluster.backend}
    shown = {name for name, _ in custom}
    for required in (metric_names.JOB_LATENCY, metric_names.JOBS_FAILED, metric_names.JOB_ERRORS,
                     metric_names.SPOT_INTERRUPTIONS, metric_names.REBALANCE_RECOMMENDATIONS):
        assert required in shown


def test_alarms_use_only_metrics_the_runtime_emits(alarmed):
    custom = [(name, dims) for ns, name, dims in alarm_metrics(alarmed) if ns == metric_names.NAMESPACE]
    names = {name for name, _ in custom}
    assert {metric_names.JOBS_FAILED, metric_names.JOBS_SUCCEEDED} <= names <= set(metric_names.ALL)
    args = alarmed.component._args
    assert all(dims == fleet_dimensions(args.stack, args.cluster) for _, dims in custom)


def test_accelerator_metric_matches_the_cloudwatch_agent_config():
    config = cloudwatch_agent_config(fleet().identity, fleet().cluster)
    namespace, metric = cluster_scaling.ACCELERATOR_METRIC["cuda"]
    assert config["metrics"]["namespace"] == namespace
    assert metric == "nvidia_smi_" + "utilization_gpu"
    assert "utilization_gpu" in config["metrics"]["metrics_collected"]["nvidia_gpu"]["measurement"]
    assert ["AutoScalingGroupName"] in config["metrics"]["aggregation_dimensions"]
    assert config["metrics"]["append_dimensions"]["AutoScalingGroupName"] == "${aws:AutoScalingGroupName}"
    neuron = fleet(amiFlavor="neuron")
    assert "nvidia_gpu" not in cloudwatch_agent_config(neuron.identity, neuron.cluster)["metrics"]["metrics_collected"]


# --- dashboard content -------------------------------------------------------------------------------
def test_dashboard_shows_backlog_per_instance_and_group_sizes(alarmed):
    body = dashboard(alarmed)
    titles = {w["properties"]["title"]: w["properties"] for w in body["widgets"]}
    per_instance = titles["Backlog per instance"]
    ids = {row[-1]["id"]: row for row in per_instance["metrics"] if not isinstance(row[0], dict)}
    (expr,) = [row[0]["expression"] for row in per_instance["metrics"] if isinstance(row[0], dict)]
    numerator, denominator = re.fullmatch(r"(\w+) / \((.+)\)", expr).groups()
    assert ids[numerator][:2] == ["AWS/SQS", "ApproximateNumberOfMessagesVisible"]
    assert {ids[i][1] for i in denominator.split(" + ")} == {"GroupInServiceInstances"}
    assert per_instance["annotations"]["horizontal"][0]["value"] == 10.0
    sizes = {(name, dims["AutoScalingGroupName"]) for ns, name, dims in dashboard_metrics(
        {"widgets": [{"properties": titles["Instances (spot / on-demand)"]}]})}
    for group in ("cluster-spot-1a2b", "cluster-ondemand-3c4d"):
        assert {("GroupInServiceInstances", group), ("GroupPendingInstances", group)} <= sizes
    latency = [row for row in titles["Job latency (ms)"]["metrics"] if row[1] == metric_names.JOB_LATENCY]
    assert {row[-1]["stat"] for row in latency} == {"p50", "p90", "p99"}
    assert alarmed.outputs["dashboard_url"].endswith("#dashboards:name=genai-dev-fleet")


# --- alarms ----------------------------------------------------------------------------------------
def test_alarms_and_encrypted_topic_when_enabled(alarmed):
    names = {a.name for a in alarmed.of_type(ALARM)}
    assert names == {f"monitoring-{s}" for s in
                     ("jobs-dead-lettered", "dlq-backed-up", "oldest-message", "job-error-rate", "api-5xx",
                      "no-capacity", "clock-offset")}
    topic = alarmed.one("aws:sns/topic:Topic")
    key = alarmed.one("aws:kms/key:Key")
    assert topic.inputs["kmsMasterKeyId"] == key.outputs["arn"]
    key_policy = json.loads(key.inputs["policy"])
    cw = [st for st in key_policy["Statement"] if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert cw and {"kms:Decrypt", "kms:GenerateDataKey*"} <= set(cw[0]["Action"])
    assert key.inputs["enableKeyRotation"] is True
    for alarm in each(alarmed, ALARM):
        assert alarm.inputs["alarmActions"] == [topic.outputs["arn"]]
    sub = alarmed.one("aws:sns/topicSubscription:TopicSubscription")
    assert (sub.inputs["protocol"], sub.inputs["endpoint"]) == ("email", "oncall@example.com")
    assert alarmed.outputs["alarm_topic_arn"] == topic.outputs["arn"]


def test_alarm_queries_return_exactly_one_series(alarmed):
    for alarm in each(alarmed, ALARM):
        queries = alarm.inputs.get("metricQueries")
        if queries:
            assert [q.get("returnData") for q in queries].count(True) == 1, alarm.name


def test_dlq_alarms_watch_what_the_dead_letters_function_does_not_remove(alarmed):
    """The dead-letters function deletes every message it reconciles, so the DLQ is empty within seconds:
    an alarm on visible messages would never fire. One alarm counts the dead letters the function received
    (each is a job failed every attempt), the other fires when dead letters stay for 15 minutes (the
    function is failing, so their jobs are not final)."""
    received = alarmed.one(ALARM, "monitoring-jobs-dead-lettered").inputs
    assert (received["namespace"], received["metricName"], received["statistic"]) == (
        "AWS/SQS", "NumberOfMessagesReceived", "Sum")
    assert received["dimensions"] == {"QueueName": "genai-dev-jobs-dlq"} and received["threshold"] == 1
    held = alarmed.one(ALARM, "monitoring-dlq-backed-up").inputs
    metrics = {q["metric"]["metricName"]: q["metric"]["dimensions"] for q in held["metricQueries"] if "metric" in q}
    dlq = {"QueueName": "genai-dev-jobs-dlq"}
    assert metrics == {"ApproximateNumberOfMessagesVisible": dlq, "ApproximateNumberOfMessagesNotVisible": dlq}
    assert held["evaluationPeriods"] == held["datapointsToAlarm"] == 3 and held["threshold"] == 1
    visible_only = [a.name for a in alarmed.of_type(ALARM) if a.inputs.get("dimensions") == dlq
                    and a.inputs.get("metricName") == "ApproximateNumberOfMessagesVisible"]
    assert visible_only == []


def test_capacity_and_api_alarms_watch_the_right_things(alarmed):
    starved = alarmed.one(ALARM, "monitoring-no-capacity").inputs
    groups = {q["metric"]["dimensions"]["AutoScalingGroupName"] for q in starved["metricQueries"]
              if q.get("metric", {}).get("metricName") == "GroupInServiceInstances"}
    assert groups == {"cluster-spot-1a2b", "cluster-ondemand-3c4d"}
    api = alarmed.one(ALARM, "monitoring-api-5xx").inputs
    assert (api["namespace"], api["metricName"], api["dimensions"]) == ("AWS/ApiGateway", "5xx", {"ApiId": "abc123"})


def test_no_notifying_alarms_or_topic_when_disabled(quiet):
    """Only the clock alarm exists on such a stack (shown in the console, notifying nobody)."""
    assert [a.name for a in quiet.of_type(ALARM)] == ["monitoring-clock-offset"]
    assert quiet.one(ALARM).inputs.get("alarmActions", []) == []
    assert not quiet.of_type("aws:sns/topic:Topic")
    assert quiet.outputs["alarm_topic_arn"] is None


@pytest.mark.parametrize("fixture", ["alarmed", "quiet"])
def test_every_stack_alarms_on_worker_clock_offset_well_inside_the_lease_bound(fixture, request):
    """Issue 28: leases are written in AWS's time (runtime/aws_clock.py) and the offset is a metric; the
    alarm sits well inside the uncorrected bound (sweeper wait - lease = 270 s) and SigV4's 5 minutes."""
    from components.job_events import STALE_LEASE_SECONDS
    from components.monitoring import CLOCK_OFFSET_ALARM_SECONDS

    built = request.getfixturevalue(fixture)
    clock = built.one(ALARM, "monitoring-clock-offset").inputs
    args = built.component._args
    assert (clock["namespace"], clock["metricName"]) == (metric_names.NAMESPACE, metric_names.CLOCK_OFFSET)
    assert clock["dimensions"] == fleet_dimensions(args.stack, args.cluster)
    assert clock["statistic"] == "Maximum" and clock["threshold"] == CLOCK_OFFSET_ALARM_SECONDS
    assert CLOCK_OFFSET_ALARM_SECONDS * 4 <= STALE_LEASE_SECONDS - 30


# --- logs, agent config, spot events ----------------------------------------------------------------
def test_log_groups_have_the_configured_retention(alarmed):
    cfg = fleet(logRetentionDays=30)
    groups = {g.inputs["name"]: g.inputs["retentionInDays"] for g in alarmed.of_type(LOG_GROUP)}
    expected = {*log_group_names(cfg.identity).values(), spot_events_log_group_name(cfg.identity)}
    assert groups == dict.fromkeys(expected, 30)
    assert alarmed.outputs["log_group_names"]["agent"] == "/genai-fleet/dev/agent"


def test_cloudwatch_agent_config_parameter(alarmed):
    cfg = fleet()
    param = alarmed.one("aws:ssm/parameter:Parameter")
    assert param.inputs["name"] == agent_parameter_name(cfg.identity) == alarmed.outputs["agent_parameter_name"]
    assert len(param.inputs["insecureValue"]) < 4096  # Standard tier limit
    config = json.loads(param.inputs["insecureValue"])
    shipped = {f["log_group_name"] for f in config["logs"]["logs_collected"]["files"]["collect_list"]}
    assert shipped == {log_group_names(cfg.identity)["agent"], log_group_names(cfg.identity)["backend"]}
    assert "emf" in config["logs"]["metrics_collected"]  # the worker's EMF records go through the agent


def test_spot_interruptions_and_rebalance_are_recorded(quiet):
    rule = quiet.one("aws:cloudwatch/eventRule:EventRule")
    pattern = json.loads(rule.inputs["eventPattern"])
    assert pattern == {"source": ["aws.ec2"], "detail-type": [
        "EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation"]}
    log = quiet.one(LOG_GROUP, "monitoring-spot-events")
    target = quiet.one("aws:cloudwatch/eventTarget:EventTarget")
    assert target.inputs["arn"] == log.outputs["arn"]
    policy = json.loads(quiet.one("aws:cloudwatch/logResourcePolicy:LogResourcePolicy").inputs["policyDocument"])
    (statement,) = policy["Statement"]
    assert "events.amazonaws.com" in statement["Principal"]["Service"]
    assert statement["Resource"] == f"{log.outputs['arn']}:*"


def test_every_child_is_parented_to_the_component(alarmed):
    component = alarmed.one("genai:monitoring:Monitoring")
    assert all(r.parent == component.urn for r in alarmed.recording.resources if r is not component)
