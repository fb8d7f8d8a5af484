"""API side of model affinity: each job goes to its model group's queue; the depth shown is the sum."""

from __future__ import annotations

import pytest

from runtime.api.environment import ApiConfig
from runtime.api.handler import _producer
from runtime.queues.affinity import ModelGroups
from runtime.queues.base import QueueMessage
from runtime.queues.memory import InMemoryQueue
from runtime.queues.routing import RoutingProducer
from runtime.queues.sqs_producer import SqsJobProducer

GROUPS = ModelGroups({"sdxl": ("sdxl-base", "sdxl-turbo"), "flux": ("flux-dev",)})


def test_jobs_go_to_their_groups_queue_and_others_to_the_main_queue():
    queues = {name: InMemoryQueue() for name in GROUPS.names()}
    producer = RoutingProducer(queues, GROUPS)
    for job_id, model in (("a", "sdxl-turbo"), ("b", "flux-dev"), ("c", "sd15"), ("d", None)):
        producer.send(QueueMessage(job_id, {"model": model} if model else {}))
    assert {name: [m.job_id for m in q.sent] for name, q in queues.items()} == {
        "sdxl": ["a"], "flux": ["b"], "default": ["c", "d"]}
    depth = producer.approximate_depth()
    assert (depth.waiting, depth.in_flight) == (4, 0)


def test_a_group_without_a_producer_is_refused():
    with pytest.raises(ValueError, match="no producer for model group"):
        RoutingProducer({"default": InMemoryQueue()}, GROUPS)


def test_the_handler_builds_a_router_from_its_environment():
    cfg = ApiConfig(job_table="jobs", queue_url="https://sqs.us-east-1.amazonaws.com/1/genai-dev-jobs",
                    model_groups=(("sdxl", ("sdxl-base",)), ("flux", ("flux-dev",))))
    assert ApiConfig.from_env(cfg.to_env()) == cfg  # GENAI_MODEL_GROUPS round-trips
    producer = _producer(ApiConfig.from_env(cfg.to_env()), lambda service: object())
    assert isinstance(producer, RoutingProducer)
    urls = {name: p.queue_url for name, p in producer.producers.items()}
    assert urls == {"default": cfg.queue_url, "sdxl": f"{cfg.queue_url}-sdxl", "flux": f"{cfg.queue_url}-flux"}
    assert producer.max_message_bytes == SqsJobProducer.max_message_bytes
    plain = _producer(ApiConfig(job_table="jobs", queue_url=cfg.queue_url), lambda service: object())
    assert isinstance(plain, SqsJobProducer)
