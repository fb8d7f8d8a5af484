"""API side of model affinity: send each job to its model group's queue (runtime.queues.affinity).

``RoutingProducer`` holds one producer per group (``default`` for models in no group) and picks one by the
job's ``model``. Size limits and depth are the groups' own: every group queue has the main queue's
settings, and the depth the API shows (queue position, wait estimate) is the sum over the queues.
SQS group queues are named ``<main queue name>-<group>`` (runtime.queue_names), so their URLs follow
from the main queue's and the API's environment only names the groups (``GENAI_MODEL_GROUPS``).
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime.queues.affinity import ModelGroups
from runtime.queues.base import JobQueueProducer, QueueDepth, QueueMessage


def sqs_group_queue_url(main_queue_url: str, group: str) -> str:
    """URL of a group's queue: the main queue's URL with ``-<group>`` (runtime.queue_names.sqs_group_queue_name)."""
    return f"{main_queue_url}-{group}"


class RoutingProducer(JobQueueProducer):
    """One producer per model group; ``send`` routes by ``job["model"]``."""

    def __init__(self, producers: Mapping[str, JobQueueProducer], groups: ModelGroups) -> None:
        missing = [g for g in groups.names() if g not in producers]
        if missing:
            raise ValueError(f"no producer for model group(s) {missing}")
        self.producers = dict(producers)
        self.groups = groups
        self.max_message_bytes = min((p.max_message_bytes for p in producers.values()
                                      if p.max_message_bytes is not None), default=None)

    def producer_for(self, message: QueueMessage) -> JobQueueProducer:
        return self.producers[self.groups.group_of(message.job.get("model"))]

    def message_size(self, message: QueueMessage) -> int:
        return self.producer_for(message).message_size(message)

    def send(self, message: QueueMessage) -> str:
        return self.producer_for(message).send(message)

    def approximate_depth(self) -> QueueDepth | None:
        depths = [p.approximate_depth() for p in self.producers.values()]
        known = [d for d in depths if d is not None]
        if not known:
            return None
        in_flight = [d.in_flight for d in known if d.in_flight is not None]
        return QueueDepth(waiting=sum(d.waiting for d in known), in_flight=sum(in_flight) if in_flight else None)

    def queue_depths(self) -> dict[str, QueueDepth | None]:
        """One entry per model group's queue (issue 43, ``GET /v1/fleet``)."""
        return {group: producer.approximate_depth() for group, producer in self.producers.items()}

    def close(self) -> None:
        for producer in self.producers.values():
            producer.close()
