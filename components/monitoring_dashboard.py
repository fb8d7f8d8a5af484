"""The fleet dashboard's body, as a pure function of plain names (tests read exactly what is deployed).

Custom metrics are the worker's (``runtime.metric_names``) in its {Stack, Backend} dimension set (one
backend per fleet: the agent config's ``backend`` is ``genai-fleet:backend``); AWS metrics
are queue depth (AWS/SQS or the Kafka backlog), group sizes (AWS/AutoScaling), accelerator
utilisation (CloudWatch agent, aggregated by group), API errors (AWS/ApiGateway) and the spot event
rule's matches (AWS/Events).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components import cluster_scaling
from components.config import ClusterSettings, StackIdentity
from runtime import metric_names as mn

WIDTH, HEIGHT = 12, 6


def _metric(namespace: str, name: str, dims: Mapping[str, str], **options: Any) -> list:
    """One dashboard metric row: namespace, name, dimension pairs, then rendering options."""
    row: list = [namespace, name]
    for key, value in dims.items():
        row += [key, value]
    return [*row, options] if options else row


def fleet_dimensions(stack: StackIdentity, cluster: ClusterSettings) -> dict[str, str]:
    """The worker's fleet-wide dimension set (runtime/worker/metrics.py emits {Stack, Backend})."""
    return {mn.DIM_STACK: stack.stack, mn.DIM_BACKEND: cluster.backend}


def _fleet(name: str, dims: Mapping[str, str], **options: Any) -> list:
    return _metric(mn.NAMESPACE, name, dims, **options)


def _widget(title: str, metrics: list, region: str, *, stat: str = "Sum", period: int = 60,
            annotations: dict | None = None, y_label: str | None = None) -> dict:
    props: dict[str, Any] = {"title": title, "view": "timeSeries", "region": region, "stat": stat, "period": period,
                             "metrics": metrics}
    if annotations:
        props["annotations"] = annotations
    if y_label:
        props["yAxis"] = {"left": {"label": y_label, "min": 0}}
    return {"type": "metric", "width": WIDTH, "height": HEIGHT, "properties": props}


def _dims(raw: Any) -> dict[str, str]:
    if isinstance(raw, Mapping):
        return dict(raw)
    return {d["name"]: d["value"] for d in raw or ()}


def dashboard_body(stack: StackIdentity, cluster: ClusterSettings, *, backlog: Mapping[str, Any],
                   groups: Mapping[str, str | None], queue_name: str | None, dlq_name: str | None, api_id: str | None,
                   event_rule_name: str) -> dict:
    region, dims = stack.region, fleet_dimensions(stack, cluster)
    groups = {label: g for label, g in groups.items() if g}
    backlog_dims = _dims(backlog.get("dimensions"))
    depth = [_metric(backlog["namespace"], backlog["metric_name"], backlog_dims, label="Backlog")]
    group_dims = [_dims(d) for d in backlog.get("extra_dimensions", ())]  # model groups' queues
    depth += [_metric(backlog["namespace"], backlog["metric_name"], d, label=f"Backlog {next(iter(d.values()))}")
              for d in group_dims]
    if dlq_name:
        depth.append(_metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", {"QueueName": dlq_name},
                             label="Dead-letter queue", stat="Maximum"))
    if queue_name:
        depth.append(_metric("AWS/SQS", "ApproximateAgeOfOldestMessage", {"QueueName": queue_name},
                             label="Oldest message (s)", stat="Maximum", yAxis="right"))

    backlog_ids = cluster_scaling.backlog_ids(backlog)
    per_instance: list = [_metric(backlog["namespace"], backlog["metric_name"], d, id=qid, visible=False)
                          for qid, d in zip(backlog_ids, [backlog_dims, *group_dims], strict=True)]
    ids = []
    for i, group in enumerate(groups.values()):
        ids.append(f"in{i}")
        per_instance.append(_metric("AWS/AutoScaling", "GroupInServiceInstances", {"AutoScalingGroupName": group},
                                    id=ids[-1], visible=False, stat="Average"))
    per_instance.append([{"expression": f"{cluster_scaling.backlog_sum(backlog_ids)} / ({' + '.join(ids)})",
                          "label": "Backlog per instance", "id": "per_instance"}])

    sizes = []
    for label, group in groups.items():
        for metric, what in (("GroupInServiceInstances", "in service"), ("GroupPendingInstances", "pending")):
            sizes.append(_metric("AWS/AutoScaling", metric, {"AutoScalingGroupName": group}, label=f"{label} {what}"))
        if label == "on-demand" and cluster.warm_pool_size:
            sizes.append(_metric("AWS/AutoScaling", "WarmPoolWarmedCapacity", {"AutoScalingGroupName": group},
                                 label="warm pool"))

    accel_ns, accel_metric = cluster_scaling.ACCELERATOR_METRIC[cluster.flavor]
    accel = [_metric(accel_ns, accel_metric, {"AutoScalingGroupName": g}, label=label) for label, g in groups.items()]
    busy = _fleet(mn.BACKEND_BUSY, dims, label="backend busy (agent)")

    widgets = [
        _widget("Queue depth", depth, region, stat="Maximum"),
        _widget("Backlog per instance", per_instance, region, stat="Sum", annotations={"horizontal": [
            {"label": "target", "value": cluster.backlog_per_instance_target}]}),
        _widget("Instances (spot / on-demand)", sizes, region, stat="Maximum"),
        _widget("Accelerator utilisation (%)", [*accel, busy], region, stat="Average", annotations={"horizontal": [
            {"label": "target", "value": cluster.gpu_utilization_target}]} if cluster.gpu_utilization_target
            else None),
        _widget("Job latency (ms)", [
            _fleet(mn.JOB_LATENCY, dims, stat="p50", label="p50"),
            _fleet(mn.JOB_LATENCY, dims, stat="p90", label="p90"),
            _fleet(mn.JOB_LATENCY, dims, stat="p99", label="p99"),
            _fleet(mn.QUEUE_WAIT, dims, stat="p90", label="queue wait p90"),
            _fleet(mn.INFERENCE_TIME, dims, stat="p50", label="inference p50"),
        ], region, stat="p50", period=300),
        _widget("Jobs and errors", [
            _fleet(mn.JOBS_SUCCEEDED, dims, label="succeeded"),
            _fleet(mn.JOBS_FAILED, dims, label="failed"),
            _fleet(mn.JOB_ERRORS, dims, label="attempt errors"),
            _fleet(mn.JOBS_HANDED_BACK, dims, label="handed back"),
        ], region, period=300),
        _widget("Spot interruptions and rebalance", [
            _fleet(mn.SPOT_INTERRUPTIONS, dims, label="interruption notices (agents)"),
            _fleet(mn.REBALANCE_RECOMMENDATIONS, dims, label="rebalance recommendations (agents)"),
            _metric("AWS/Events", "MatchedEvents", {"RuleName": event_rule_name}, label="EC2 events (account)"),
        ], region, period=300),
        _widget("Boot to ready and model cache", [
            _fleet(mn.BOOT_TO_READY, dims, stat="p90", label="boot to ready p90 (ms)"),
            _fleet(mn.MODEL_LOAD_TIME, dims, stat="p90", label="model load p90 (ms)"),
            _fleet(mn.MODEL_CACHE_HITS, dims, stat="Sum", label="cache hits", yAxis="right"),
            _fleet(mn.MODEL_CACHE_MISSES, dims, stat="Sum", label="cache misses", yAxis="right"),
            _fleet(mn.UPLOAD_TIME, dims, stat="p90", label="upload p90 (ms)"),
        ], region, stat="p90", period=300),
        _widget("Model switches, tiers and downloads", [
            _fleet(mn.MODEL_SWITCHES, dims, stat="Sum", label="switches", id="switches"),
            _fleet(mn.MODEL_SWITCH_TIME, dims, stat="p90", label="time to switch p90 (ms)", yAxis="right"),
            _fleet(mn.MODEL_RAM_HITS, dims, stat="Sum", id="ram_hits", visible=False),
            _fleet(mn.MODEL_RAM_MISSES, dims, stat="Sum", id="ram_misses", visible=False),
            _fleet(mn.MODEL_CACHE_HITS, dims, stat="Sum", id="disk_hits", visible=False),
            _fleet(mn.MODEL_CACHE_MISSES, dims, stat="Sum", id="disk_misses", visible=False),
            _fleet(mn.MODEL_DOWNLOAD_BYTES, dims, stat="Sum", id="dl_bytes", visible=False),
            _fleet(mn.MODEL_DOWNLOAD_TIME, dims, stat="Sum", id="dl_ms", visible=False),
            [{"expression": "100 * ram_hits / (ram_hits + ram_misses)", "label": "RAM tier hit ratio (%)",
              "id": "ram_ratio"}],
            [{"expression": "100 * disk_hits / (disk_hits + disk_misses)", "label": "disk cache hit ratio (%)",
              "id": "disk_ratio"}],
            [{"expression": "dl_bytes / 1000 / dl_ms", "label": "download MB/s", "id": "dl_rate", "yAxis": "right"}],
        ], region, period=300),
    ]
    if api_id:
        widgets.append(_widget("Job API", [
            _metric("AWS/ApiGateway", "Count", {"ApiId": api_id}, label="requests"),
            _metric("AWS/ApiGateway", "4xx", {"ApiId": api_id}, label="4xx"),
            _metric("AWS/ApiGateway", "5xx", {"ApiId": api_id}, label="5xx"),
        ], region, period=300))
    for i, widget in enumerate(widgets):
        widget["x"], widget["y"] = (i % 2) * WIDTH, (i // 2) * HEIGHT
    return {"widgets": widgets}
