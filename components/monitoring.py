"""What watches the fleet: CloudWatch agent config, log groups, dashboard, alarms and spot event records.

- CloudWatch agent config in an SSM parameter (user data loads it): memory, disk, accelerator metrics
  (``nvidia_gpu`` on cuda; neuron-monitor's NeuronCore utilisation is forwarded by the AMI on neuron)
  aggregated by ``AutoScalingGroupName``, and the agent and backend log files.
- Log groups for agent and backend with ``logRetentionDays`` (the API component owns its own).
- A dashboard: queue depth, backlog per instance against its target, in-service / pending instances
  per group (spot and on-demand), accelerator utilisation, job latency percentiles, errors, spot
  interruptions, boot-to-ready and cache behaviour. Custom metric names come from
  ``runtime.metric_names``, the module the worker emits with.
- Alarms (``alarmsEnabled``) to an SNS topic encrypted with a customer managed KMS key. Not
  ``alias/aws/sns``: CloudWatch alarms cannot use the AWS managed SNS key (its key policy does not
  let cloudwatch.amazonaws.com call kms:GenerateDataKey*, and it cannot be edited), so notifications
  would silently fail.
- An EventBridge rule recording "EC2 Spot Instance Interruption Warning" and "EC2 Instance Rebalance
  Recommendation" events of the account and region in a log group.

The log group and parameter names are pure functions of the config, so the cluster's IAM policy can
name them without depending on this component (which in turn needs the cluster's group names).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components import cluster_iam, cluster_scaling, scaling_plan, user_data
from components.config import (
    ClusterSettings,
    MonitoringSettings,
    QueueSettings,
    StackIdentity,
    StorageSettings,
)
from components.monitoring_dashboard import dashboard_body, fleet_dimensions
from components.naming import agent_parameter_name, log_group_names, spot_events_log_group_name
from components.queue_endpoint import QueueEndpoint, SqsEndpoint
from runtime import instance_contract, metric_names

# The files the AMI's units append the agent's and the backend's output to (the instance contract).
AGENT_LOG_FILE = instance_contract.AGENT_LOG
BACKEND_LOG_FILE = instance_contract.BACKEND_LOG
SPOT_EVENT_TYPES = ("EC2 Spot Instance Interruption Warning", "EC2 Instance Rebalance Recommendation")
JOB_ERROR_RATE_PERCENT = 5
# A worker's clock this far from AWS's (runtime/aws_clock.py measures it): lease times are corrected by the
# offset, but SigV4 refuses requests more than 5 minutes off and an uncorrected worker breaks leases at
# STALE_LEASE_SECONDS - lease (270 s): alarm well inside both (docs/worker.md, "Clocks").
CLOCK_OFFSET_ALARM_SECONDS = 30
API_5XX_PER_5_MINUTES = 5
DLQ_BACKED_UP_PERIODS = 3  # 5-minute periods in a row with a dead letter in the queue (it normally leaves in seconds)


def cloudwatch_agent_config(stack: StackIdentity, cluster: ClusterSettings) -> dict[str, Any]:
    """CloudWatch agent config: host and accelerator metrics per group, agent and backend logs."""
    collected: dict[str, Any] = {
        "mem": {"measurement": ["mem_used_percent"]},
        "disk": {"measurement": ["used_percent"], "resources": ["/", user_data.NVME_CACHE_DIR], "drop_device": True},
    }
    if cluster.flavor == "cuda":
        collected["nvidia_gpu"] = {"measurement": [
            "utilization_gpu", "utilization_memory", "memory_used", "memory_total", "temperature_gpu", "power_draw"]}
    groups = log_group_names(stack)
    files = [{"file_path": path, "log_group_name": groups[kind], "log_stream_name": "{instance_id}",
              "timezone": "UTC"} for kind, path in (("agent", AGENT_LOG_FILE), ("backend", BACKEND_LOG_FILE))]
    return {
        "agent": {"metrics_collection_interval": 60},
        "metrics": {
            "namespace": cluster_iam.CLOUDWATCH_AGENT_NAMESPACE,
            "append_dimensions": {"AutoScalingGroupName": "${aws:AutoScalingGroupName}",
                                  "InstanceId": "${aws:InstanceId}", "InstanceType": "${aws:InstanceType}"},
            "aggregation_dimensions": [["AutoScalingGroupName"]],
            "metrics_collected": collected,
        },
        # emf: the worker's embedded-metric records arrive on 127.0.0.1:25888 (runtime/worker/metrics.py).
        "logs": {"metrics_collected": {"emf": {}}, "logs_collected": {"files": {"collect_list": files}}},
    }


def oldest_message_threshold(cluster: ClusterSettings, queue: QueueSettings) -> int:
    """Seconds: accepted wait + a scale-from-zero boot + the longest job (in-flight messages count)."""
    return int(cluster.acceptable_wait_seconds + scaling_plan.launching_heartbeat(cluster)
               + queue.longest_job_seconds)


def no_capacity_minutes(cluster: ClusterSettings) -> int:
    """Backlog with nothing InService for longer than a launch may take (boot + preload) is an outage."""
    return max(15, math.ceil(scaling_plan.launching_heartbeat(cluster) / 60) + 5)


@dataclass
class MonitoringArgs:
    stack: StackIdentity
    """``FleetConfig.identity``: log group, parameter, dashboard and alarm names; the dashboard's region."""
    monitoring: MonitoringSettings
    """``FleetConfig.monitoring``: whether alarms exist, and the e-mail they go to."""
    storage: StorageSettings
    """``FleetConfig.storage``: ``log_retention_days`` of the workers' and the spot events' log groups."""
    cluster: ClusterSettings
    """``FleetConfig.cluster``: flavor (accelerator metrics), backend (metric dimension), scaling targets."""
    queue_settings: QueueSettings
    """``FleetConfig.queue``: the job time limit, part of the oldest-message alarm's threshold."""
    queue: QueueEndpoint
    """RequestQueue.endpoint: its backlog metric; an SQS endpoint adds the oldest-message and DLQ alarms."""
    spot_group_name: pulumi.Input[str]
    """The spot (mixed instances) group."""
    on_demand_group_name: pulumi.Input[str | None] | None = None
    """The on-demand base group, when there is one."""
    api_id: pulumi.Input[str] | None = None
    """HTTP API id for the 5xx alarm and widget, when the API is deployed."""


class Monitoring(pulumi.ComponentResource):
    """CloudWatch agent config, log groups, dashboard, alarms + topic, spot event records."""

    dashboard_name: pulumi.Output[str]
    dashboard_url: pulumi.Output[str]
    alarm_topic_arn: pulumi.Output[str | None]
    log_group_names: pulumi.Output[dict]
    agent_parameter_name: pulumi.Output[str]
    spot_events_rule_name: pulumi.Output[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("genai:monitoring:Monitoring", name, None, opts)
        self._name, self._args, stack = name, args, args.stack
        self._account = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self)).account_id
        parameter = aws.ssm.Parameter(
            f"{name}-cwagent", name=agent_parameter_name(stack), type="String", tier="Standard",
            description="CloudWatch agent config of the genai-fleet workers",
            insecure_value=json.dumps(cloudwatch_agent_config(stack, args.cluster), sort_keys=True), opts=self._opts())
        logs = {kind: aws.cloudwatch.LogGroup(f"{name}-{kind}", name=group,
                                              retention_in_days=args.storage.log_retention_days, opts=self._opts())
                for kind, group in log_group_names(stack).items()}
        rule, events_log = self._create_spot_event_records()
        dashboard = self._create_dashboard(rule.name)
        topic = self._create_alarms() if args.monitoring.alarms_enabled else None
        self._create_clock_alarm(topic)

        self.dashboard_name = dashboard.dashboard_name
        self.dashboard_url = dashboard.dashboard_name.apply(
            lambda n: f"https://{stack.region}.console.aws.amazon.com/cloudwatch/home?region={stack.region}"
                      f"#dashboards:name={n}")
        self.alarm_topic_arn = topic.arn if topic else pulumi.Output.from_input(None)
        self.log_group_names = pulumi.Output.all(
            **{kind: group.name for kind, group in logs.items()}, spot_events=events_log.name)
        self.agent_parameter_name = parameter.name
        self.spot_events_rule_name = rule.name
        self.register_outputs({
            "dashboard_name": self.dashboard_name, "dashboard_url": self.dashboard_url,
            "alarm_topic_arn": self.alarm_topic_arn, "log_group_names": self.log_group_names,
            "agent_parameter_name": self.agent_parameter_name, "spot_events_rule_name": self.spot_events_rule_name,
        })

    def _opts(self, **kwargs) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, **kwargs)

    # --- spot events ---------------------------------------------------------------------------------
    def _create_spot_event_records(self) -> tuple[aws.cloudwatch.EventRule, aws.cloudwatch.LogGroup]:
        a = self._args
        log = aws.cloudwatch.LogGroup(f"{self._name}-spot-events", name=spot_events_log_group_name(a.stack),
                                      retention_in_days=a.storage.log_retention_days, opts=self._opts())
        rule = aws.cloudwatch.EventRule(
            f"{self._name}-spot-events", description="Record spot interruption warnings and rebalance recommendations",
            event_pattern=json.dumps({"source": ["aws.ec2"], "detail-type": list(SPOT_EVENT_TYPES)}),
            opts=self._opts())
        # EventBridge writes to CloudWatch Logs only where the log group's resource policy lets it.
        policy = aws.cloudwatch.LogResourcePolicy(
            f"{self._name}-spot-events", policy_name=f"{a.stack.resource_prefix()}-spot-events",
            policy_document=log.arn.apply(lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Sid": "EventBridgeToSpotEventLog", "Effect": "Allow",
                "Principal": {"Service": ["delivery.logs.amazonaws.com", "events.amazonaws.com"]},
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"], "Resource": f"{arn}:*"}]})),
            opts=self._opts())
        aws.cloudwatch.EventTarget(f"{self._name}-spot-events", rule=rule.name, arn=log.arn,
                                   opts=self._opts(depends_on=[policy]))
        return rule, log

    # --- dashboard -----------------------------------------------------------------------------------
    def _create_dashboard(self, rule_name: pulumi.Output[str]) -> aws.cloudwatch.Dashboard:
        a = self._args
        sqs = a.queue if isinstance(a.queue, SqsEndpoint) else None
        body = pulumi.Output.all(
            backlog=a.queue.backlog_metric, spot=a.spot_group_name, ondemand=a.on_demand_group_name,
            queue=sqs and sqs.queue_name, dlq=sqs and sqs.dlq_name, api=a.api_id, rule=rule_name,
        ).apply(lambda v: json.dumps(dashboard_body(
            a.stack, a.cluster, backlog=v["backlog"], groups={"spot": v["spot"], "on-demand": v["ondemand"]},
            queue_name=v["queue"], dlq_name=v["dlq"], api_id=v["api"], event_rule_name=v["rule"])))
        return aws.cloudwatch.Dashboard(f"{self._name}-dashboard", dashboard_name=f"{a.stack.resource_prefix()}-fleet",
                                        dashboard_body=body, opts=self._opts())

    # --- alarms --------------------------------------------------------------------------------------
    def _create_topic(self) -> aws.sns.Topic:
        a, account = self._args, self._account
        key = aws.kms.Key(
            f"{self._name}-alarms", description="genai-fleet alarm topic (CloudWatch alarms may use it)",
            enable_key_rotation=True, deletion_window_in_days=7,
            policy=account.apply(lambda acct: json.dumps({"Version": "2012-10-17", "Statement": [
                {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{acct}:root"},
                 "Action": "kms:*", "Resource": "*"},
                {"Sid": "CloudWatchAlarmsEncrypt", "Effect": "Allow",
                 "Principal": {"Service": "cloudwatch.amazonaws.com"},
                 "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
                 "Condition": {"StringEquals": {"aws:SourceAccount": acct}}}]})),
            opts=self._opts())
        aws.kms.Alias(f"{self._name}-alarms", name=f"alias/{a.stack.resource_prefix()}-alarms",
                      target_key_id=key.key_id, opts=self._opts())
        topic = aws.sns.Topic(f"{self._name}-alarms", kms_master_key_id=key.arn, opts=self._opts())
        publish = pulumi.Output.all(topic.arn, account).apply(lambda r: json.dumps({
            "Version": "2012-10-17", "Statement": [{
                "Sid": "CloudWatchAlarmsPublish", "Effect": "Allow",
                "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish", "Resource": r[0],
                "Condition": {"StringEquals": {"aws:SourceAccount": r[1]}}}]}))
        aws.sns.TopicPolicy(f"{self._name}-alarms", arn=topic.arn, policy=publish, opts=self._opts())
        if a.monitoring.alarm_email:
            aws.sns.TopicSubscription(f"{self._name}-alarms-email", topic=topic.arn, protocol="email",
                                      endpoint=a.monitoring.alarm_email, opts=self._opts())
        return topic

    def _alarm(self, suffix: str, topic: aws.sns.Topic, description: str, **kwargs: Any) -> aws.cloudwatch.MetricAlarm:
        kwargs.setdefault("treat_missing_data", "notBreaching")
        return aws.cloudwatch.MetricAlarm(f"{self._name}-{suffix}", alarm_description=description,
                                          alarm_actions=[topic.arn], ok_actions=[topic.arn], opts=self._opts(),
                                          **kwargs)

    def _create_alarms(self) -> aws.sns.Topic:
        a = self._args
        topic = self._create_topic()
        stack_dims = fleet_dimensions(a.stack, a.cluster)
        minutes = no_capacity_minutes(a.cluster)
        if isinstance(a.queue, SqsEndpoint):
            self._create_sqs_alarms(topic, a.queue)
        self._alarm("job-error-rate", topic, f"More than {JOB_ERROR_RATE_PERCENT}% of finished jobs failed.",
                    evaluation_periods=3, datapoints_to_alarm=2, threshold=JOB_ERROR_RATE_PERCENT,
                    comparison_operator="GreaterThanThreshold", metric_queries=[
                        {"id": "ok", "return_data": False, "metric": {"namespace": metric_names.NAMESPACE,
                                                "metric_name": metric_names.JOBS_SUCCEEDED, "stat": "Sum",
                                                "period": 300, "dimensions": stack_dims}},
                        {"id": "failed", "return_data": False, "metric": {"namespace": metric_names.NAMESPACE,
                                                    "metric_name": metric_names.JOBS_FAILED, "stat": "Sum",
                                                    "period": 300, "dimensions": stack_dims}},
                        {"id": "rate", "return_data": True, "label": "Failed jobs (%)",
                         "expression": "100 * FILL(failed, 0) / (FILL(ok, 0) + FILL(failed, 0))"}])
        if a.api_id is not None:
            self._alarm("api-5xx", topic, "The job API answers with server errors.", namespace="AWS/ApiGateway",
                        metric_name="5xx", dimensions={"ApiId": a.api_id}, statistic="Sum", period=300,
                        evaluation_periods=2, datapoints_to_alarm=2, threshold=API_5XX_PER_5_MINUTES,
                        comparison_operator="GreaterThanOrEqualToThreshold")
        self._alarm("no-capacity", topic, "Work is queued but no instance is InService (spot capacity or AMI?).",
                    evaluation_periods=minutes, datapoints_to_alarm=minutes,
                    threshold=1, comparison_operator="GreaterThanOrEqualToThreshold",
                    metric_queries=pulumi.Output.all(a.queue.backlog_metric, a.spot_group_name, a.on_demand_group_name)
                    .apply(lambda r: _no_capacity_queries(r[0], [g for g in r[1:] if g])))
        return topic

    def _create_clock_alarm(self, topic: aws.sns.Topic | None) -> aws.cloudwatch.MetricAlarm:
        """On every stack, notifying only where alarms are enabled: a broken time sync shows in the console."""
        actions = [topic.arn] if topic is not None else []
        return aws.cloudwatch.MetricAlarm(
            f"{self._name}-clock-offset", opts=self._opts(),
            alarm_description=f"A worker's clock is more than {CLOCK_OFFSET_ALARM_SECONDS}s from AWS's (measured from "
                              "response Date headers): time sync is broken on an instance (docs/worker.md, Clocks).",
            namespace=metric_names.NAMESPACE, metric_name=metric_names.CLOCK_OFFSET,
            dimensions=fleet_dimensions(self._args.stack, self._args.cluster), statistic="Maximum", period=300,
            evaluation_periods=1, threshold=CLOCK_OFFSET_ALARM_SECONDS, comparison_operator="GreaterThanThreshold",
            treat_missing_data="notBreaching", alarm_actions=actions, ok_actions=actions)

    def _create_sqs_alarms(self, topic: aws.sns.Topic, sqs: SqsEndpoint) -> None:
        """Kafka has no per-queue CloudWatch metrics; its backlog alarm is the no-capacity one."""
        overdue = oldest_message_threshold(self._args.cluster, self._args.queue_settings)
        # The DLQ is the dead-letters function's input, not a parking lot: the function makes each job final
        # (failed, dead-lettered, with its attempts) and deletes the message, so the queue is empty within
        # seconds and "messages visible" would never alarm. What is worth knowing: a job was dead-lettered
        # (the function received it), and dead letters that stay (the function is failing to reconcile them).
        self._alarm("jobs-dead-lettered", topic,
                    "Jobs failed every attempt: the dead-letters function marked them failed (code dead-lettered; "
                    "the job record holds each attempt's error).",
                    namespace="AWS/SQS", metric_name="NumberOfMessagesReceived",
                    dimensions={"QueueName": sqs.dlq_name}, statistic="Sum", period=300,
                    evaluation_periods=1, threshold=1, comparison_operator="GreaterThanOrEqualToThreshold")
        self._alarm("dlq-backed-up", topic,
                    f"Dead letters stayed in the dead-letter queue for {DLQ_BACKED_UP_PERIODS * 5} minutes: the "
                    f"dead-letters function is not reconciling them (its log group), so their jobs are not final.",
                    evaluation_periods=DLQ_BACKED_UP_PERIODS, datapoints_to_alarm=DLQ_BACKED_UP_PERIODS, threshold=1,
                    comparison_operator="GreaterThanOrEqualToThreshold", metric_queries=[
                        {"id": q, "return_data": False, "metric": {
                            "namespace": "AWS/SQS", "metric_name": metric, "stat": "Maximum", "period": 300,
                            "dimensions": {"QueueName": sqs.dlq_name}}}
                        for q, metric in (("visible", "ApproximateNumberOfMessagesVisible"),
                                          ("inflight", "ApproximateNumberOfMessagesNotVisible"))] + [
                        {"id": "held", "return_data": True, "label": "Dead letters in the queue",
                         "expression": "FILL(visible, 0) + FILL(inflight, 0)"}])
        self._alarm("oldest-message", topic, "A job has waited longer than accepted wait + launch + longest job.",
                    namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
                    dimensions={"QueueName": sqs.queue_name}, statistic="Maximum", period=60, evaluation_periods=5,
                    datapoints_to_alarm=5, threshold=overdue,
                    comparison_operator="GreaterThanThreshold")
        for group in sqs.groups:  # model affinity: the overdue bound keeps these young unless capacity is short
            self._alarm(f"oldest-message-{group.group}", topic,
                        f"A job of model group {group.group} has waited longer than accepted wait + launch + longest "
                        f"job.", namespace="AWS/SQS", metric_name="ApproximateAgeOfOldestMessage",
                        dimensions={"QueueName": group.queue_name}, statistic="Maximum", period=60,
                        evaluation_periods=5, datapoints_to_alarm=5,
                        threshold=overdue,
                        comparison_operator="GreaterThanThreshold")


def _no_capacity_queries(backlog: Mapping[str, Any], groups: list[str]) -> list[dict]:
    queries = []
    for qid, dims in zip(cluster_scaling.backlog_ids(backlog), cluster_scaling.backlog_dimension_sets(backlog),
                         strict=True):
        dims = dims or {}
        if not isinstance(dims, Mapping):
            dims = {d["name"]: d["value"] for d in dims}
        queries.append({"id": qid, "return_data": False, "metric": {
            "namespace": backlog["namespace"], "metric_name": backlog["metric_name"], "stat": "Maximum",
            "period": 60, "dimensions": dict(dims)}})
    ids = []
    for i, group in enumerate(groups):
        ids.append(f"in{i}")
        queries.append({"id": ids[-1], "return_data": False, "metric": {"namespace": "AWS/AutoScaling",
                                                  "metric_name": "GroupInServiceInstances", "stat": "Maximum",
                                                  "period": 60, "dimensions": {"AutoScalingGroupName": group}}})
    total = " + ".join(f"FILL({i}, 0)" for i in ids)
    queries.append({"id": "starved", "return_data": True, "label": "Backlog with no InService instance",
                    "expression": f"IF({cluster_scaling.backlog_sum(cluster_scaling.backlog_ids(backlog))} >= 1 "
                                  f"AND ({total}) == 0, 1, 0)"})
    return queries
