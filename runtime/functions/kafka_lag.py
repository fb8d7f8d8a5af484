"""The Kafka backlog metric: jobs waiting = the workers' consumer-group lag, published each minute.

SQS publishes ``ApproximateNumberOfMessagesVisible`` itself; Kafka has no such metric, so a scheduled
Lambda (components/kafka_functions.py, EventBridge ``rate(1 minute)``) runs ``lambda_handler``: it reads
the lag of the workers' group on the jobs topic (``runtime.queues.kafka_lag.read_lag``) and puts it to
``GenAIFleet/KafkaBacklog`` with the dimension ``Stack=<stack>``: the metric and dimensions that
RequestQueue.backlog_metric names and the scaling policies and alarms read (runtime/metric_names).

MSK IAM: ``kafka-cluster:Connect`` on the cluster, ``DescribeTopic`` on the jobs topic, ``DescribeGroup``
on the group; ``cloudwatch:PutMetricData`` limited to the fleet's namespace.

Environment: GENAI_KAFKA_BOOTSTRAP, GENAI_KAFKA_TOPIC (genai-jobs), GENAI_KAFKA_GROUP (genai-workers),
GENAI_STACK, GENAI_KAFKA_IAM (true), AWS_REGION (set by Lambda), GENAI_AWS_ENDPOINT_URL (moto / local).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from runtime import metric_names as m
from runtime.functions import environment
from runtime.queue_names import KAFKA_GROUP, KAFKA_TOPIC
from runtime.queues.kafka_lag import Lag, read_lag

log = logging.getLogger(__name__)


def publish(cloudwatch: Any, stack: str, lag: Lag) -> dict[str, Any]:
    """Put the backlog datum; returns what was sent (for logs and tests)."""
    datum = {"MetricName": m.KAFKA_BACKLOG, "Dimensions": [{"Name": m.DIM_STACK, "Value": stack}],
             "Value": float(lag.total), "Unit": "Count"}
    cloudwatch.put_metric_data(Namespace=m.NAMESPACE, MetricData=[datum])
    return datum


def lambda_handler(event: Any, context: Any, cloudwatch: Any = None) -> dict[str, Any]:
    env = os.environ
    bootstrap, stack = env.get("GENAI_KAFKA_BOOTSTRAP"), env.get("GENAI_STACK")
    if not bootstrap or not stack:
        raise RuntimeError("GENAI_KAFKA_BOOTSTRAP and GENAI_STACK must be set for the lag publisher")
    topic, group = env.get("GENAI_KAFKA_TOPIC", KAFKA_TOPIC), env.get("GENAI_KAFKA_GROUP", KAFKA_GROUP)
    lag = read_lag(bootstrap, topic, group, iam_auth=env.get("GENAI_KAFKA_IAM", "true").lower() != "false",
                   region=environment.region())
    if cloudwatch is None:
        cloudwatch = environment.client("cloudwatch")
    publish(cloudwatch, stack, lag)
    log.info("kafka backlog %d (%s)", lag.total, {"partitions": lag.partitions, "uncommitted": lag.uncommitted})
    return {"backlog": lag.total, "partitions": {str(k): v for k, v in lag.partitions.items()},
            "uncommitted": list(lag.uncommitted)}
