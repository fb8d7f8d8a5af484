"""Webhook events derived from job record changes (the job table's stream), captured when they happen.

Why from the stream: a worker or an API call that changes a record must never wait on a receiver
(invariant 4), and an event must be sent once per transition however many processes race to make it
(ten concurrent cancels make one ``canceled`` write, so one ``completed`` event). The stream carries the
old and new image of every write; each transition below yields one delivery whose payload is the job
as it was right after that write, so a late delivery still reports what happened then.

=============  ==========================================================  ======================
event          transition (old image -> new image)                         Webhook-Id
=============  ==========================================================  ======================
``start``      ``started_at`` set for the first time (first pick-up)       ``<job_id>.start``
``output``     ``outputs`` become non-empty (the final write of a success)  ``<job_id>.output``
``completed``  status becomes succeeded, failed or canceled                ``<job_id>.completed``
=============  ==========================================================  ======================

Only events in the job's ``webhook_events_filter`` are delivered, and only when it has a ``webhook``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from runtime.jobs.store import FINAL, deserialize
from runtime.jobs.views import public_view


@dataclass(frozen=True)
class Delivery:
    """One webhook to send: everything the sender needs, frozen at the time of the change."""

    url: str
    event: str
    webhook_id: str
    job: dict[str, Any]  # public view of the job right after the change, output keys in place of URLs
    at: float  # when the change was written (the record's updated_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True, default=str)

    @classmethod
    def from_json(cls, body: str) -> Delivery:
        data = json.loads(body)
        return cls(url=data["url"], event=data["event"], webhook_id=data["webhook_id"], job=data["job"],
                   at=float(data["at"]))


def record_from_image(image: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A job record from a stream image (DynamoDB JSON); None for other items (idempotency, quota)."""
    if not image:
        return None
    item = deserialize(image)
    pk = str(item.pop("pk", ""))
    if not pk.startswith("job#"):
        return None
    if isinstance(item.get("spec"), str):
        item["spec"] = json.loads(item["spec"])
    item.setdefault("job_id", pk.split("#", 1)[1])
    return item


def transitions(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """The events one write made, in the order a receiver should see them."""
    old = old or {}
    events = []
    if new.get("started_at") is not None and old.get("started_at") is None:
        events.append("start")
    if new.get("outputs") and not old.get("outputs"):
        events.append("output")
    if new.get("status") in FINAL and old.get("status") not in FINAL:
        events.append("completed")
    return events


def deliveries(old_image: Mapping[str, Any] | None, new_image: Mapping[str, Any] | None,
               base_url: str = "") -> list[Delivery]:
    """The webhooks one stream record asks for (none when the job has no webhook or filters them out)."""
    new = record_from_image(new_image)
    if new is None:
        return []
    spec = new.get("spec") or {}
    url = spec.get("webhook")
    wanted = set(spec.get("webhook_events_filter") or ())
    if not url:
        return []
    view = public_view(new, base_url, None)  # output links are made by the sender at send time (issue 43)
    at = float(new.get("updated_at") or 0.0)
    return [Delivery(url=url, event=event, webhook_id=f"{new['job_id']}.{event}", job=view, at=at)
            for event in transitions(record_from_image(old_image), new) if event in wanted]
