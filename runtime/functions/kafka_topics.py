"""Creates the fleet's topics at deploy time (MSK Serverless does not auto-create topics).

The stack invokes ``lambda_handler`` once per deployment whose topic settings changed (a Lambda in the
cluster's VPC, components/kafka_functions.py, run by an ``aws.lambda_.Invocation``): the Pulumi CLI
itself cannot reach an MSK Serverless cluster, which has private endpoints only, so the ``kafka``
provider is not an option there. The event lists the topics::

    {"topics": [{"name": "genai-jobs", "partitions": 12, "config": {"retention.ms": "604800000"}}, ...]}

For each topic: create it when missing (partitions + config); when it exists with fewer partitions, add
partitions (never fewer: Kafka cannot remove them); when a listed config differs, set it
(incremental alter). A failure raises, so the deployment fails and names the topic.

MSK IAM: ``kafka-cluster:Connect`` on the cluster; ``CreateTopic``, ``DescribeTopic``, ``AlterTopic``,
``DescribeTopicDynamicConfiguration`` and ``AlterTopicDynamicConfiguration`` on the two topics.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.functions import environment
from runtime.queues.base import QueueUnavailableError
from runtime.queues.kafka_auth import security_config

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> TopicSpec:
        name, partitions, config = raw.get("name"), raw.get("partitions"), raw.get("config") or {}
        if not isinstance(name, str) or not name:
            raise ValueError(f"topic spec {raw!r}: 'name' must be a non-empty string")
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 1:
            raise ValueError(f"topic {name}: 'partitions' must be an integer >= 1, got {partitions!r}")
        if not isinstance(config, Mapping):
            raise ValueError(f"topic {name}: 'config' must be an object of strings")
        return cls(name, partitions, {str(k): str(v) for k, v in config.items()})


def _wait(futures: Mapping[Any, Any], what: str, timeout_s: float, tolerate: tuple[int, ...] = ()) -> None:
    for key, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except Exception as exc:  # KafkaException or a timeout: both fail the deployment
            error = exc.args[0] if exc.args else None
            if getattr(error, "code", lambda: None)() in tolerate:
                continue
            raise QueueUnavailableError(f"{what} {getattr(key, 'name', key)}: {exc}") from exc


def ensure_topics(admin: Any, specs: Sequence[TopicSpec], timeout_s: float = 30.0) -> dict[str, str]:
    """Bring every topic to its spec with a confluent-kafka ``AdminClient``; returns topic -> what was done."""
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        NewPartitions,
        NewTopic,
        ResourceType,
    )

    existing = admin.list_topics(timeout=timeout_s).topics
    done: dict[str, str] = {}
    missing = [s for s in specs if s.name not in existing]
    if missing:
        _wait(admin.create_topics([NewTopic(s.name, num_partitions=s.partitions, config=dict(s.config))
                                   for s in missing], operation_timeout=timeout_s, request_timeout=timeout_s),
              "creating topic", timeout_s, tolerate=(KafkaError.TOPIC_ALREADY_EXISTS,))  # a concurrent deploy
        done.update({s.name: f"created with {s.partitions} partitions" for s in missing})
    for spec in (s for s in specs if s.name in existing):
        have = len(existing[spec.name].partitions)
        actions = []
        if have < spec.partitions:
            _wait(admin.create_partitions([NewPartitions(spec.name, spec.partitions)], request_timeout=timeout_s),
                  "adding partitions to", timeout_s)
            actions.append(f"partitions {have} -> {spec.partitions}")
        elif have > spec.partitions:
            actions.append(f"keeps {have} partitions (Kafka cannot remove partitions)")
        resource = ConfigResource(ResourceType.TOPIC, spec.name)
        (current,) = admin.describe_configs([resource], request_timeout=timeout_s).values()
        entries = current.result(timeout=timeout_s)
        changed = {k: v for k, v in spec.config.items() if k not in entries or entries[k].value != v}
        if changed:
            resource = ConfigResource(ResourceType.TOPIC, spec.name, incremental_configs=[
                ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in sorted(changed.items())])
            _wait(admin.incremental_alter_configs([resource], request_timeout=timeout_s), "configuring", timeout_s)
            actions.append("set " + ", ".join(f"{k}={v}" for k, v in sorted(changed.items())))
        done[spec.name] = "; ".join(actions) or "up to date"
    for name, what in done.items():
        log.info("kafka topic %s: %s", name, what)
    return done


def lambda_handler(event: Mapping[str, Any], context: Any, admin: Any = None) -> dict[str, Any]:
    specs = [TopicSpec.parse(raw) for raw in (event or {}).get("topics") or []]
    if not specs:
        raise ValueError("the event lists no topics: expected {\"topics\": [{\"name\", \"partitions\", \"config\"}]}")
    if admin is None:
        from confluent_kafka.admin import AdminClient

        env = os.environ
        bootstrap = env.get("GENAI_KAFKA_BOOTSTRAP")
        if not bootstrap:
            raise RuntimeError("GENAI_KAFKA_BOOTSTRAP must be set for the topic creator")
        admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": "genai-topic-creator",
                             **security_config(env.get("GENAI_KAFKA_IAM", "true").lower() != "false",
                                               environment.region())})
    return {"topics": ensure_topics(admin, specs)}
