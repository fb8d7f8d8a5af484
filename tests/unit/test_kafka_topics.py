"""The deploy-time topic creator against a stand-in of confluent-kafka's AdminClient.

librdkafka's mock cluster answers no admin request that needs a controller (CreateTopics, CreatePartitions,
DescribeConfigs time out "waiting for controller" in 2.16), so the stand-in follows the AdminClient API
and Kafka's rules instead: the same argument classes, a dict of futures per call, TOPIC_ALREADY_EXISTS
on a second create, INVALID_PARTITIONS when asked for fewer partitions, config values as strings.
"""

from __future__ import annotations

from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import ConfigResource, NewPartitions, NewTopic

from runtime.functions.kafka_topics import TopicSpec, ensure_topics, lambda_handler
from runtime.queues.base import QueueUnavailableError

DEFAULTS = {"retention.ms": "604800000", "cleanup.policy": "delete"}


def _done(value: Any = None, error: int | None = None) -> Future:
    future: Future = Future()
    if error is None:
        future.set_result(value)
    else:
        future.set_exception(KafkaException(KafkaError(error)))
    return future


class StandInAdmin:
    def __init__(self, topics: dict[str, tuple[int, dict[str, str]]] | None = None, fail_create: int | None = None):
        self.topics = {k: (n, {**DEFAULTS, **cfg}) for k, (n, cfg) in (topics or {}).items()}
        self.calls: list[str] = []
        self.fail_create = fail_create

    def list_topics(self, timeout: float = -1) -> Any:
        return SimpleNamespace(topics={name: SimpleNamespace(partitions={i: None for i in range(n)}, error=None)
                                       for name, (n, _) in self.topics.items()})

    def create_topics(self, new_topics: list[NewTopic], **_: Any) -> dict[str, Future]:
        out = {}
        for topic in new_topics:
            assert isinstance(topic, NewTopic) and all(isinstance(v, str) for v in topic.config.values())
            self.calls.append(f"create {topic.topic} {topic.num_partitions}")
            if self.fail_create is not None:
                out[topic.topic] = _done(error=self.fail_create)
            elif topic.topic in self.topics:
                out[topic.topic] = _done(error=KafkaError.TOPIC_ALREADY_EXISTS)
            else:
                self.topics[topic.topic] = (topic.num_partitions, {**DEFAULTS, **topic.config})
                out[topic.topic] = _done()
        return out

    def create_partitions(self, new_partitions: list[NewPartitions], **_: Any) -> dict[str, Future]:
        out = {}
        for np in new_partitions:
            have, cfg = self.topics[np.topic]
            self.calls.append(f"partitions {np.topic} {np.new_total_count}")
            if np.new_total_count <= have:
                out[np.topic] = _done(error=KafkaError.INVALID_PARTITIONS)
            else:
                self.topics[np.topic] = (np.new_total_count, cfg)
                out[np.topic] = _done()
        return out

    def describe_configs(self, resources: list[ConfigResource], **_: Any) -> dict[ConfigResource, Future]:
        return {r: _done({k: SimpleNamespace(name=k, value=v) for k, v in self.topics[r.name][1].items()})
                for r in resources}

    def incremental_alter_configs(self, resources: list[ConfigResource], **_: Any) -> dict[ConfigResource, Future]:
        for r in resources:
            assert r.incremental_configs, "incremental_alter_configs needs incremental_configs"
            for entry in r.incremental_configs:
                self.topics[r.name][1][entry.name] = entry.value
            self.calls.append(f"configure {r.name}")
        return {r: _done() for r in resources}


SPECS = [TopicSpec("genai-jobs", 12, {"retention.ms": "604800000"}),
         TopicSpec("genai-jobs-dlq", 1, {"retention.ms": "1209600000"})]


def test_missing_topics_are_created_with_partitions_and_retention():
    admin = StandInAdmin()
    done = ensure_topics(admin, SPECS)
    assert admin.topics["genai-jobs"][0] == 12 and admin.topics["genai-jobs-dlq"][0] == 1
    assert admin.topics["genai-jobs-dlq"][1]["retention.ms"] == "1209600000"
    assert done == {"genai-jobs": "created with 12 partitions", "genai-jobs-dlq": "created with 1 partitions"}
    assert ensure_topics(admin, SPECS) == {"genai-jobs": "up to date", "genai-jobs-dlq": "up to date"}
    assert len([c for c in admin.calls if c.startswith("create")]) == 2  # the second run creates nothing


def test_existing_topic_grows_partitions_and_gets_its_retention():
    admin = StandInAdmin({"genai-jobs": (6, {"retention.ms": "86400000"}), "genai-jobs-dlq": (3, {})})
    done = ensure_topics(admin, SPECS)
    assert admin.topics["genai-jobs"] == (12, {**DEFAULTS, "retention.ms": "604800000"})
    assert done["genai-jobs"] == "partitions 6 -> 12; set retention.ms=604800000"
    assert admin.topics["genai-jobs-dlq"][0] == 3 and "cannot remove" in done["genai-jobs-dlq"]


def test_a_refused_create_fails_the_deployment_naming_the_topic():
    admin = StandInAdmin(fail_create=KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(QueueUnavailableError, match="creating topic genai-jobs"):
        ensure_topics(admin, SPECS)


def test_handler_validates_the_event():
    with pytest.raises(ValueError, match="lists no topics"):
        lambda_handler({}, None, admin=StandInAdmin())
    with pytest.raises(ValueError, match="'partitions' must be an integer"):
        lambda_handler({"topics": [{"name": "t", "partitions": "6"}]}, None, admin=StandInAdmin())
    admin = StandInAdmin()
    out = lambda_handler({"topics": [{"name": "t", "partitions": 2, "config": {"retention.ms": 1000}}]}, None,
                         admin=admin)
    assert out == {"topics": {"t": "created with 2 partitions"}} and admin.topics["t"][1]["retention.ms"] == "1000"
