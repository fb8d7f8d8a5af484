"""``GET /v1/fleet`` (issue 43, item 5): the fleet's state for operators, the first operator-only route.

To start with, per queue: ``depth`` (messages waiting), ``in_flight`` (being worked on; null where the queue
cannot tell) and ``oldest_age_seconds`` (the oldest waiting message's age; null where the queue cannot tell
cheaply: SQS keeps it only as a CloudWatch metric). The console issue adds to it. Tenant keys get 403
(``require_operator``); what it shows is the whole fleet's, never one tenant's jobs.
"""

from __future__ import annotations

from typing import Any

from runtime.api.auth import OPERATOR_SCOPE, Principal
from runtime.api.problems import ApiError
from runtime.queues.base import JobQueueProducer, QueueDepth, QueueError


def require_operator(principal: Principal) -> Principal:
    """``principal`` when it holds an operator key, else 403 naming the scope it needs."""
    if principal.scope != OPERATOR_SCOPE:
        raise ApiError(403, "forbidden-scope", "Forbidden",
                       f"this route needs a key of scope '{OPERATOR_SCOPE}' (this key's scope is '{principal.scope}'); "
                       "operators mint one with `genai-stack api-key --scope operator`")
    return principal


def _queue(name: str, depth: QueueDepth | None, now: float) -> dict[str, Any]:
    if depth is None:
        return {"name": name, "depth": None, "in_flight": None, "oldest_age_seconds": None}
    oldest = depth.oldest_enqueued_at
    return {"name": name, "depth": depth.waiting, "in_flight": depth.in_flight,
            "oldest_age_seconds": None if oldest is None else round(max(0.0, now - oldest), 3)}


def fleet_view(producer: JobQueueProducer, now: float) -> dict[str, Any]:
    """The body of ``GET /v1/fleet``; a queue that cannot be read shows nulls (the route still answers)."""
    try:
        depths = producer.queue_depths()
    except QueueError:
        depths = {"jobs": None}
    return {"time": now, "queues": [_queue(name, depth, now) for name, depth in depths.items()]}
