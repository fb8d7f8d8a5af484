"""The stack functions' AWS clients: one factory (runtime.aws_clients, profile ``function``), the region Lambda
sets, the endpoint of GENAI_AWS_ENDPOINT_URL; each handler makes its clients there."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import aws_clients
from runtime.functions import environment, kafka_lag, reconciler, webhook_dispatch


@pytest.fixture
def made(monkeypatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []

    def record(service: str, **kwargs: Any) -> Any:
        calls.append({"service": service, **kwargs})
        return object()

    monkeypatch.setattr(aws_clients, "client", record)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("GENAI_AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    return calls


def test_a_function_client_has_the_function_profile_region_and_endpoint(made):
    environment.client("sqs")
    assert made == [{"service": "sqs", "profile": "function", "region": "eu-west-1",
                     "endpoint_url": "http://127.0.0.1:5000"}]


def test_without_an_endpoint_the_client_goes_to_the_regional_aws_endpoint(made, monkeypatch):
    monkeypatch.delenv("GENAI_AWS_ENDPOINT_URL")
    monkeypatch.delenv("AWS_REGION")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-west-2")
    environment.client("dynamodb")
    assert made == [{"service": "dynamodb", "profile": "function", "region": "us-west-2", "endpoint_url": None}]


def test_the_handlers_make_their_clients_through_the_function_environment(made, monkeypatch):
    monkeypatch.setattr(reconciler, "_cached", {})
    monkeypatch.setattr(webhook_dispatch, "_cached", {})
    monkeypatch.setenv("GENAI_JOB_TABLE", "jobs")
    monkeypatch.setenv("GENAI_WEBHOOK_QUEUE_URL", "http://127.0.0.1:5000/q")
    monkeypatch.setenv("GENAI_WEBHOOK_SECRET", "s3cret")
    assert reconciler.dead_letter_handler({"Records": []}) == {"batchItemFailures": [], "outcomes": []}
    assert webhook_dispatch.stream_handler({"Records": []}) == {"queued": 0}
    webhook_dispatch.sender_handler({"Records": []})
    monkeypatch.setattr(kafka_lag, "read_lag", lambda *a, **k: kafka_lag.Lag(total=0))
    monkeypatch.setenv("GENAI_KAFKA_BOOTSTRAP", "127.0.0.1:9092")
    monkeypatch.setenv("GENAI_STACK", "dev")
    monkeypatch.setattr(kafka_lag, "publish", lambda *a: {})
    kafka_lag.lambda_handler({}, None)
    assert [(c["service"], c["profile"], c["region"]) for c in made] == [
        ("dynamodb", "function", "eu-west-1"), ("sqs", "function", "eu-west-1"), ("sqs", "function", "eu-west-1"),
        ("cloudwatch", "function", "eu-west-1")]
