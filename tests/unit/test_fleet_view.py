"""Issue 43, item 5: ``GET /v1/fleet``'s body per queue (runtime/api/fleet.py) and its operator-only guard."""

from __future__ import annotations

import pytest

from runtime.api.auth import Principal
from runtime.api.fleet import fleet_view, require_operator
from runtime.api.problems import ApiError
from runtime.queues.affinity import ModelGroups
from runtime.queues.base import QueueMessage
from runtime.queues.memory import InMemoryQueue
from runtime.queues.routing import RoutingProducer


def test_a_tenant_key_is_refused_with_403_naming_the_scope_it_needs():
    with pytest.raises(ApiError) as info:
        require_operator(Principal(id="abcdefabcdef", kind="api-key"))
    assert info.value.status == 403 and "scope 'operator'" in info.value.detail
    operator = Principal(id="abcdefabcdef", kind="api-key", scope="operator")
    assert require_operator(operator) is operator


def test_each_queue_shows_its_depth_and_the_age_of_its_oldest_waiting_job():
    default, video = InMemoryQueue(), InMemoryQueue()
    producer = RoutingProducer({"default": default, "video": video}, ModelGroups({"video": ("wan-2.1",)}))
    producer.send(QueueMessage(job_id="j1", job={"model": "sdxl"}, enqueued_at=1000.0))
    producer.send(QueueMessage(job_id="j2", job={"model": "sdxl"}, enqueued_at=1010.0))
    view = fleet_view(producer, now=1030.0)
    assert view["queues"] == [
        {"name": "default", "depth": 2, "in_flight": 0, "oldest_age_seconds": 30.0},
        {"name": "video", "depth": 0, "in_flight": 0, "oldest_age_seconds": None}]
