"""Shared fixtures: local AWS (moto server) and a local Kafka (librdkafka's mock cluster).

Names are a contract with other test files (the worker's tests reuse them); keep them stable:

- ``moto_endpoint`` (session): URL of a ``ThreadedMotoServer`` on a free loopback port. Dummy AWS
  credentials and a region are put in the environment for the whole session so boto3 never looks for
  real ones. moto keeps state in memory: create resources with unique names per test.
- ``kafka_bootstrap`` (session): ``host:port`` of a one-broker mock Kafka cluster on loopback.
- ``aws_clients`` (function): a small factory ``aws_clients("sqs")`` for boto3 clients on moto.
- ``job_table`` / ``sqs_queue`` (function): a fresh job table (the CONTRACTS.md key design) and a
  fresh SQS standard queue on moto; they return names/URLs.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

_DUMMY_AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Every test starts with a current event loop on its thread, before any fixture (module-scoped ones too):
    Pulumi builds Outputs on it, and a test that ran ``asyncio.run`` earlier in the same process (xdist puts
    tests of many files in one) leaves the thread with none."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """A moto server on 127.0.0.1:<free port>; yields its URL (``http://127.0.0.1:PORT``)."""
    from moto.server import ThreadedMotoServer

    saved = {k: os.environ.get(k) for k in _DUMMY_AWS_ENV}
    os.environ.update(_DUMMY_AWS_ENV)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """A librdkafka mock cluster with one broker; yields its bootstrap string (``127.0.0.1:PORT``)."""
    confluent_kafka = pytest.importorskip("confluent_kafka")
    holder = confluent_kafka.Producer({"test.mock.num.brokers": 1})
    brokers = holder.list_topics(timeout=10).brokers
    bootstrap = ",".join(f"{b.host}:{b.port}" for b in brokers.values())
    try:
        yield bootstrap
    finally:
        holder.flush(1)
        del holder  # the mock cluster lives as long as the producer that created it


@pytest.fixture
def aws_clients(moto_endpoint: str) -> Callable[..., Any]:
    """``aws_clients("dynamodb")`` -> a boto3 client pointed at the moto server."""
    import boto3

    def make(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return make


@pytest.fixture
def job_table(aws_clients: Callable[..., Any]) -> str:
    """A fresh job table on moto shaped like components/job_store.py declares it (pk S, TTL)."""
    from runtime.jobs.store import create_table

    name = f"jobs-{uuid.uuid4().hex[:10]}"
    create_table(aws_clients("dynamodb"), name)
    return name


@pytest.fixture
def sqs_queue(aws_clients: Callable[..., Any]) -> str:
    """A fresh SQS standard queue on moto with AWS's 256 KiB MaximumMessageSize (moto: 1 MiB); returns its URL."""
    from runtime.queues.base import SQS_MAX_MESSAGE_BYTES

    sqs = aws_clients("sqs")
    return sqs.create_queue(QueueName=f"jobs-{uuid.uuid4().hex[:10]}",
                            Attributes={"MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES)})["QueueUrl"]
