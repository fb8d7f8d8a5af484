"""Lifecycle hooks and scaling policies of the worker groups.

Scaling (AWS's "scaling based on Amazon SQS" guide): the metric is *backlog per instance*, computed with
metric math as queue depth (or Kafka consumer lag) divided by the InService instances of both groups,
and target tracking keeps it at ``acceptableWaitSeconds / averageJobSeconds``. Only the spot (mixed)
group scales; the on-demand base group has a fixed size and counts in the denominator.

Target tracking cannot leave zero (capacity 0 times any ratio is 0, and the division has no value),
so a step policy takes the spot group from zero to one when the backlog exceeds what the on-demand
base can absorb. An optional second target keeps average GPU (or NeuronCore) utilisation near a
target; with two targets the group scales out when either asks and in only when both agree.

The numbers (target, threshold, heartbeats) come from ``scaling_plan``, which the capacity planner
simulates too; this module only turns them into resources.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from components.scaling_plan import (
    FROM_ZERO_EVALUATION_PERIODS,
    FROM_ZERO_STEP,
    LAUNCHING_HOOK,
    METRIC_PERIOD,
    TERMINATING_HOOK,
    FleetPlan,
)

ENABLED_METRICS = ("GroupMinSize", "GroupMaxSize", "GroupDesiredCapacity", "GroupInServiceInstances",
                   "GroupPendingInstances", "GroupStandbyInstances", "GroupTerminatingInstances",
                   "GroupTotalInstances", "WarmPoolWarmedCapacity", "WarmPoolPendingCapacity")
# Accelerator utilisation per flavour: (namespace, metric) aggregated by AutoScalingGroupName.
# cuda: the CloudWatch agent's nvidia_gpu plugin publishes nvidia_smi_<measurement>.
# neuron: neuron-monitor's neuroncore_counters.neuroncore_utilization (percent, averaged over cores),
#         published by the AMI's neuron-monitor.service in its namespace GenAIFleet/Neuron with the
#         AutoScalingGroupName dimension (docs/amis.md; contract with packer/).
ACCELERATOR_METRIC = {"cuda": ("CWAgent", "nvidia_smi_utilization_gpu"),
                      "neuron": ("GenAIFleet/Neuron", "neuroncore_utilization")}


def lifecycle_hooks(plan: FleetPlan) -> list[dict]:
    """Hooks declared with the group, so even the first instances wait for them.

    Launching: the agent completes it (CONTINUE) once the backend answers and hot models are loaded;
    an instance that never gets ready is abandoned (terminated) when the heartbeat runs out.
    Terminating: the agent stops pulling, finishes or hands back its job, then completes it; if the
    agent is gone, Auto Scaling continues the termination after the heartbeat.
    """
    return [
        {"name": LAUNCHING_HOOK, "lifecycle_transition": "autoscaling:EC2_INSTANCE_LAUNCHING",
         "heartbeat_timeout": plan.launching_heartbeat, "default_result": "ABANDON"},
        {"name": TERMINATING_HOOK, "lifecycle_transition": "autoscaling:EC2_INSTANCE_TERMINATING",
         "heartbeat_timeout": plan.terminating_heartbeat, "default_result": "CONTINUE"},
    ]


def create_lifecycle_hooks(name: str, plan: FleetPlan, group: aws.autoscaling.Group,
                           parent: pulumi.Resource) -> list[aws.autoscaling.LifecycleHook]:
    """The group's hooks again as ``LifecycleHook`` resources, same names and settings, so changes apply.

    The provider applies a group's ``initial_lifecycle_hooks`` only when it creates the group; a later change
    (a longer job time limit raises the terminating heartbeat) shows in the preview and never reaches AWS.
    ``PutLifecycleHook`` creates or updates by name, so these resources take over the hooks the group was
    created with and carry every later change. Both stay: a hook resource is created only after its group,
    when the group's first instances may already be launching.
    """
    return [aws.autoscaling.LifecycleHook(
        f"{name}-{hook['name']}", name=hook["name"], autoscaling_group_name=group.name,
        lifecycle_transition=hook["lifecycle_transition"], heartbeat_timeout=hook["heartbeat_timeout"],
        default_result=hook["default_result"], opts=pulumi.ResourceOptions(parent=parent))
        for hook in lifecycle_hooks(plan)]


def _dimensions(raw: Any) -> list[dict]:
    """``{"QueueName": "q"}`` or ``[{"name": .., "value": ..}]`` -> ``[{"name": .., "value": ..}]``."""
    if isinstance(raw, Mapping):
        return [{"name": k, "value": v} for k, v in raw.items()]
    return [{"name": d["name"], "value": d["value"]} for d in raw or ()]


def backlog_dimension_sets(backlog: Mapping[str, Any]) -> list[Any]:
    """The backlog metric's dimension sets: the main queue's, then each model group queue's (summed)."""
    return [backlog.get("dimensions"), *backlog.get("extra_dimensions", ())]


def backlog_sum(ids: Sequence[str]) -> str:
    """Metric-math sum of the backlog queries (a group queue without data counts 0)."""
    return ids[0] if len(ids) == 1 else "(" + " + ".join(f"FILL({i}, 0)" for i in ids) + ")"


def backlog_ids(backlog: Mapping[str, Any]) -> list[str]:
    """Query ids of the backlog metrics: ``backlog`` for the main queue, ``backlog_g<i>`` per group queue."""
    return ["backlog", *(f"backlog_g{i}" for i in range(len(backlog.get("extra_dimensions", ()))))]


def backlog_per_instance_queries(backlog: Mapping[str, Any], group_names: Sequence[str]) -> list[dict]:
    """Metric-math queries: ``backlog (summed over the queues) / (InService of every group)``; only the
    expression returns data."""
    queries = [{"id": qid, "return_data": False, "metric_stat": {
        "stat": "Sum", "metric": {"namespace": backlog["namespace"], "metric_name": backlog["metric_name"],
                                  "dimensions": _dimensions(dims)}}}
               for qid, dims in zip(backlog_ids(backlog), backlog_dimension_sets(backlog), strict=True)]
    ids = []
    for i, group in enumerate(group_names):
        ids.append(f"inservice{i}")
        queries.append({"id": ids[-1], "return_data": False, "metric_stat": {
            "stat": "Average", "metric": {"namespace": "AWS/AutoScaling", "metric_name": "GroupInServiceInstances",
                                          "dimensions": [{"name": "AutoScalingGroupName", "value": group}]}}})
    queries.append({"id": "backlog_per_instance", "label": "Backlog per InService instance", "return_data": True,
                    "expression": f"{backlog_sum(backlog_ids(backlog))} / ({' + '.join(ids)})"})
    return queries

def _wake_queries(b: Mapping[str, Any], group_name: str, threshold: int) -> list[dict]:
    """1 while the backlog reaches ``threshold`` and the group's desired capacity is 0, else 0."""
    backlog = [{"id": qid, "return_data": False, "metric": {
        "namespace": b["namespace"], "metric_name": b["metric_name"], "stat": "Maximum",
        "period": METRIC_PERIOD, "dimensions": {d["name"]: d["value"] for d in _dimensions(dims)}}}
        for qid, dims in zip(backlog_ids(b), backlog_dimension_sets(b), strict=True)]
    return [
        *backlog,
        {"id": "desired", "return_data": False, "metric": {
            "namespace": "AWS/AutoScaling", "metric_name": "GroupDesiredCapacity", "stat": "Maximum",
            "period": METRIC_PERIOD, "dimensions": {"AutoScalingGroupName": group_name}}},
        {"id": "wake", "return_data": True, "label": "Backlog waiting on an empty spot group",
         "expression": f"IF(FILL(desired, 0) == 0 AND {backlog_sum(backlog_ids(b))} >= {threshold}, 1, 0)"},
    ]


def create_scaling_policies(name: str, plan: FleetPlan, flavor: str, group: aws.autoscaling.Group,
                            group_names: Sequence[pulumi.Input[str]], backlog_metric: pulumi.Input[Mapping[str, Any]],
                            parent: pulumi.Resource) -> dict[str, pulumi.Resource]:
    """Target tracking on backlog per instance, the zero-to-one step and the optional utilisation target."""
    opts = pulumi.ResourceOptions(parent=parent)
    backlog = pulumi.Output.from_input(backlog_metric)
    queries = pulumi.Output.all(backlog, pulumi.Output.all(*group_names)).apply(
        lambda r: backlog_per_instance_queries(r[0], r[1]))
    made: dict[str, pulumi.Resource] = {}
    made["backlog"] = aws.autoscaling.Policy(
        f"{name}-backlog-target", autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
        target_tracking_configuration={"target_value": plan.target,
                                       "customized_metric_specification": {"metrics": queries}},
        opts=opts)

    step = aws.autoscaling.Policy(
        f"{name}-from-zero", autoscaling_group_name=group.name, policy_type="StepScaling",
        adjustment_type="ChangeInCapacity", metric_aggregation_type="Maximum",
        step_adjustments=[{"metric_interval_lower_bound": "0", "scaling_adjustment": FROM_ZERO_STEP}], opts=opts)
    threshold = plan.from_zero_threshold
    made["from_zero"] = step
    made["from_zero_alarm"] = aws.cloudwatch.MetricAlarm(
        f"{name}-from-zero", alarm_description=(
            f"Work is waiting (backlog >= {threshold}) and the spot group wants 0 instances: add one. "
            "Target tracking takes over once an instance is InService."),
        comparison_operator="GreaterThanOrEqualToThreshold", threshold=1,
        evaluation_periods=FROM_ZERO_EVALUATION_PERIODS, datapoints_to_alarm=FROM_ZERO_EVALUATION_PERIODS,
        treat_missing_data="notBreaching", alarm_actions=[step.arn],
        metric_queries=pulumi.Output.all(backlog, group.name).apply(lambda r: _wake_queries(r[0], r[1], threshold)),
        opts=opts)

    if plan.gpu_utilization_target is not None:
        namespace, metric = ACCELERATOR_METRIC[flavor]
        made["utilization"] = aws.autoscaling.Policy(
            f"{name}-utilization-target", autoscaling_group_name=group.name, policy_type="TargetTrackingScaling",
            target_tracking_configuration={
                "target_value": float(plan.gpu_utilization_target),
                "customized_metric_specification": {
                    "namespace": namespace, "metric_name": metric, "statistic": "Average",
                    "metric_dimensions": [{"name": "AutoScalingGroupName", "value": group.name}]}},
            opts=opts)
    return made
