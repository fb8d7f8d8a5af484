"""Model affinity on SQS (moto): the worker entry point builds an affinity consumer over a queue per model
group; the agent drains the group of the model it loaded before it switches, and counts the switch."""

from __future__ import annotations

import json

import pytest

from fleetdev.worker_support import Stack, make_agent
from runtime import metric_names as m
from runtime.agent_config import AgentConfigError, parse
from runtime.queues.affinity import AffinityConsumer
from runtime.worker.__main__ import _consumer

pytestmark = pytest.mark.integration


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


def test_agent_serves_the_loaded_models_group_before_switching(stack):
    sdxl_url = stack.sqs.create_queue(QueueName=f"{stack.table}-sdxl")["QueueUrl"]
    config = stack.config(queue={"groups": [{"name": "sdxl", "models": ["sdxl-base"], "url": sdxl_url}],
                                 "affinity_max_wait_seconds": 600, "affinity_switch_after_seconds": 1,
                                 "affinity_idle_switch_seconds": 30})
    consumer = _consumer(config, "i-test")
    assert isinstance(consumer, AffinityConsumer) and set(consumer.queues) == {"default", "sdxl"}
    assert (consumer.switch_after_seconds, consumer.idle_switch_seconds) == (1, 30)
    agent = make_agent(stack, config, consumer=consumer)
    default_url = stack.queue_url
    sd15 = [stack.submit(model="sd15") for _ in range(2)]
    stack.queue_url = sdxl_url  # the API routes by model: sdxl jobs go to the sdxl group's queue
    sdxl = [stack.submit(model="sdxl-base") for _ in range(3)]
    stack.queue_url = default_url
    agent.boot()
    assert agent.run(max_jobs=5) == 5
    order = [s.job_id for s in agent.stats]
    assert set(order[:3]) == set(sdxl) and set(order[3:]) == set(sd15)  # cold start: longest backlog first
    assert all(stack.store.get(j)["status"] == "succeeded" for j in order)
    assert stack.counts(default_url) == (0, 0) and stack.counts(sdxl_url) == (0, 0)
    switches = [r for r in agent.metrics.records if m.MODEL_SWITCHES in r]
    assert len(switches) == 1 and switches[0]["previous"] == "sdxl-base" and switches[0]["model"] == "sd15"
    assert len([r for r in agent.metrics.records if m.MODEL_SWITCH_TIME in r]) == 1
    assert consumer.stats.picks == {"sdxl": 3, "default": 2}


def test_groups_config_is_validated_with_the_key_named(stack):
    base = json.loads(stack.config().to_json())

    def with_groups(groups, **extra):
        return parse({**base, "queue": {**base["queue"], "groups": groups, **extra}})

    assert with_groups([])
    ok = with_groups([{"name": "sdxl", "models": ["a"], "url": "https://q"}])
    assert ok.queue.groups[0].models == ("a",)
    assert parse(json.loads(ok.to_json())) == ok  # survives the launch template's round trip
    cases = [
        ([{"name": "sdxl", "models": ["a"]}], "queue.groups\\[0\\].url is required"),
        ([{"name": "sdxl", "models": [], "url": "u"}], "models must be a non-empty list"),
        ([{"name": "default", "models": ["a"], "url": "u"}], "must be unique and not 'default'"),
        ([{"name": "x", "models": ["a"], "url": "u"}, {"name": "y", "models": ["a"], "url": "v"}],
         "in another group"),
        ([{"name": "x", "models": ["a"], "url": "u", "queue": "?"}], "allowed: name, models, url, topic"),
        ("sdxl", "must be a list"),
    ]
    for groups, message in cases:
        with pytest.raises(AgentConfigError, match=message):
            with_groups(groups)
    with pytest.raises(AgentConfigError, match="affinity_max_wait_seconds"):
        with_groups([], affinity_max_wait_seconds=0)
    with pytest.raises(AgentConfigError, match="affinity_switch_after_seconds = 'soon'"):
        with_groups([], affinity_switch_after_seconds="soon")
    with pytest.raises(AgentConfigError, match="affinity_idle_switch_seconds = -1"):
        with_groups([], affinity_idle_switch_seconds=-1)
