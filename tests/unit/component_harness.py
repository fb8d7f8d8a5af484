"""Build one component in-process under the recording mocks and return what it declared.

``build(lambda: Network("net", NetworkArgs(cfg)), "vpc_id")`` sets fresh mocks, runs the factory inside
the Pulumi runtime, waits for every registration, resolves the named outputs and returns a
``Built`` with the recorded resources (type, name, parent, camelCase inputs). Each call resets the
runtime, so tests stay independent. Provider functions are answered by ``RecordingMocks.call``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from components import config as fleet_config
from components.config_settings import NAMESPACE
from components.queue_endpoint import KafkaEndpoint, SqsEndpoint
from fleetdev.pulumi_mocks import (
    PROJECT,
    RecordedResource,
    Recording,
    RecordingMocks,
    _plain,
    install_recorder,
    stack_config,
)

BASE = {"owner": "platform-team", "costCenter": "genai-test"}


def fleet(stack: str = "dev", **values: Any) -> fleet_config.FleetConfig:
    """A validated FleetConfig with the required tags filled in."""
    return fleet_config.load({**BASE, **values}, stack=stack)


def stack_fleet(stack: str, **overrides: Any) -> fleet_config.FleetConfig:
    """The FleetConfig of ``Pulumi.<stack>.yaml`` (plus overrides), as the program would read it."""
    flat, region = stack_config(stack, overrides)
    prefix = NAMESPACE + ":"
    values = {k[len(prefix):]: v for k, v in flat.items() if k.startswith(prefix)}
    return fleet_config.load(values, stack=stack, region=region)


def sqs_endpoint(prefix: str = "genai-dev", region: str = "us-east-1", account: str = "123456789012",
                 **overrides: Any) -> SqsEndpoint:
    """An SQS endpoint with the identifiers RequestQueue would export for ``prefix``."""
    arn, url = f"arn:aws:sqs:{region}:{account}:", f"https://sqs.{region}.amazonaws.com/{account}/"
    values = {"queue_url": f"{url}{prefix}-jobs", "queue_arn": f"{arn}{prefix}-jobs", "queue_name": f"{prefix}-jobs",
              "dlq_url": f"{url}{prefix}-jobs-dlq", "dlq_arn": f"{arn}{prefix}-jobs-dlq",
              "dlq_name": f"{prefix}-jobs-dlq",
              "backlog_metric": {"namespace": "AWS/SQS", "metric_name": "ApproximateNumberOfMessagesVisible",
                                 "dimensions": {"QueueName": f"{prefix}-jobs"}}}
    return SqsEndpoint(**{**values, **overrides})


def kafka_endpoint(stack: str = "dev", cluster_arn: str = "arn:aws:kafka:us-east-1:123456789012:cluster/c/u",
                   **overrides: Any) -> KafkaEndpoint:
    """A Kafka endpoint with the identifiers RequestQueue would export."""
    sibling = cluster_arn.replace(":cluster/", ":{}/") + "/{}"
    values = {"cluster_arn": cluster_arn, "bootstrap_brokers": "boot-abc.kafka:9098",
              "topic_arn": sibling.format("topic", "genai-jobs"),
              "dlq_topic_arn": sibling.format("topic", "genai-jobs-dlq"),
              "group_arn": sibling.format("group", "genai-workers"),
              "client_security_group_id": "sg-kafkaclients", "subnet_ids": ["subnet-a", "subnet-b"],
              "backlog_metric": {"namespace": "GenAIFleet", "metric_name": "KafkaBacklog",
                                 "dimensions": {"Stack": stack}}}
    return KafkaEndpoint(**{**values, **overrides})


@dataclass
class Built:
    recording: Recording
    outputs: dict[str, Any]
    component: Any

    def of_type(self, type_token: str) -> list[RecordedResource]:
        return self.recording.of_type(type_token)

    def one(self, type_token: str, name: str | None = None) -> RecordedResource:
        return self.recording.one(type_token, name)


def each(source: Built | Recording, type_token: str) -> list[RecordedResource]:
    """The resources of ``type_token`` to check one by one; fails when there are none, since a loop over nothing
    asserts nothing (a renamed type token would leave every check inside it green). Tests loop over this, never
    over ``of_type`` itself (tests/unit/test_test_hygiene.py)."""
    found = source.of_type(type_token)
    assert found, f"no {type_token} was declared: the checks on each of them ran on none"
    return found


def build(factory: Callable[[], pulumi.ComponentResource], *outputs: str, region: str = "us-east-1",
          stack: str = "dev") -> Built:
    recorder = RecordingMocks(region)
    mocks, monitor = install_recorder(recorder)
    pmocks.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=monitor)
    holder: dict[str, Any] = {}

    def program():
        holder["component"] = factory()

    _sync_await(run_pulumi_func(program))
    component = holder["component"]
    resolved = {name: _plain(_sync_await(pulumi.Output.from_input(_attribute(component, name)).future()))
                for name in outputs}
    recording = Recording(resources=[recorder.resources[u] for u in recorder.order], exports={},
                          calls=_plain(recorder.calls))
    return Built(recording=recording, outputs=resolved, component=component)


def _attribute(component: Any, dotted: str) -> Any:
    """``"endpoint.queue_url"`` -> ``component.endpoint.queue_url``."""
    for part in dotted.split("."):
        component = getattr(component, part)
    return component


def children(built: Built, component_type: str) -> list[RecordedResource]:
    """Every resource declared under the (single) component of ``component_type``."""
    parent = built.one(component_type)
    return [r for r in built.recording.resources if r.parent == parent.urn]
