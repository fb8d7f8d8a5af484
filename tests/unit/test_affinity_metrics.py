"""Model groups: scaling, alarms and the dashboard sum the backlog over every group queue, within
CloudWatch's 10 metrics per metric-math alarm."""

from __future__ import annotations

from components import cluster_scaling
from components.config_rules import MAX_MODEL_GROUPS
from components.monitoring import _no_capacity_queries
from components.monitoring_dashboard import dashboard_body
from tests.unit.component_harness import fleet

MAIN = {"namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
        "dimensions": {"QueueName": "genai-dev-jobs"}}


def grouped(n: int) -> dict:
    return {**MAIN, "extra_dimensions": [{"QueueName": f"genai-dev-jobs-g{i}"} for i in range(n)]}


def test_backlog_per_instance_sums_the_group_queues():
    queries = cluster_scaling.backlog_per_instance_queries(grouped(2), ["spot", "base"])
    metrics = {q["id"]: q["metric_stat"]["metric"]["dimensions"] for q in queries if "metric_stat" in q}
    assert metrics["backlog"] == [{"name": "QueueName", "value": "genai-dev-jobs"}]
    assert metrics["backlog_g1"] == [{"name": "QueueName", "value": "genai-dev-jobs-g1"}]
    [expr] = [q["expression"] for q in queries if "expression" in q]
    assert expr == "(FILL(backlog, 0) + FILL(backlog_g0, 0) + FILL(backlog_g1, 0)) / (inservice0 + inservice1)"
    plain = cluster_scaling.backlog_per_instance_queries(MAIN, ["spot"])
    assert plain[-1]["expression"] == "backlog / (inservice0)"  # unchanged without groups


def test_wake_and_no_capacity_alarms_sum_the_group_queues():
    wake = cluster_scaling._wake_queries(grouped(1), "spot", 3)
    assert wake[-1]["expression"] == "IF(FILL(desired, 0) == 0 AND (FILL(backlog, 0) + FILL(backlog_g0, 0)) >= 3, 1, 0)"
    starved = _no_capacity_queries(grouped(1), ["spot", "base"])
    assert starved[1]["metric"]["dimensions"] == {"QueueName": "genai-dev-jobs-g0"}
    assert starved[-1]["expression"].startswith("IF((FILL(backlog, 0) + FILL(backlog_g0, 0)) >= 1 AND")


def test_the_largest_allowed_grouping_fits_cloudwatch_metric_math():
    most = grouped(MAX_MODEL_GROUPS)
    for queries in (cluster_scaling.backlog_per_instance_queries(most, ["spot", "base"]),
                    cluster_scaling._wake_queries(most, "spot", 1), _no_capacity_queries(most, ["spot", "base"])):
        assert len(queries) <= 10


def test_dashboard_shows_each_group_queue_and_sums_them_per_instance():
    cfg = fleet()
    body = dashboard_body(cfg.identity, cfg.cluster, backlog=grouped(2), groups={"spot": "g-spot"},
                          queue_name="genai-dev-jobs", dlq_name="genai-dev-jobs-dlq", api_id=None,
                          event_rule_name="rule")
    by_title = {w["properties"]["title"]: w["properties"]["metrics"] for w in body["widgets"]}
    depth_labels = [row[-1].get("label") for row in by_title["Queue depth"] if isinstance(row[-1], dict)]
    assert "Backlog genai-dev-jobs-g0" in depth_labels and "Backlog genai-dev-jobs-g1" in depth_labels
    per_instance = by_title["Backlog per instance"][-1][0]["expression"]
    assert per_instance.startswith("(FILL(backlog, 0) + FILL(backlog_g0, 0) + FILL(backlog_g1, 0)) / (")
    switches = by_title["Model switches, tiers and downloads"]
    expressions = {row[0]["label"] for row in switches if isinstance(row[0], dict)}
    assert {"RAM tier hit ratio (%)", "disk cache hit ratio (%)", "download MB/s"} <= expressions
