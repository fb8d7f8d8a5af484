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

``progress`` (opt-in, issue 38) comes from another stream: the event table's (components/job_event_log.py),
whose mapping passes only the event items the worker marked ``notify`` (at most one per job attempt every
``PROGRESS_WEBHOOK_INTERVAL_S``). ``progress_delivery`` makes one from such an item and the job record read
then: none when the job no longer wants it or is already final (no progress after ``completed`` is queued).
Its Webhook-Id is ``<job_id>.progress.<cursor>``; the payload is the job as GET shows it, ``progress`` that event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from runtime.jobs.events import NOTIFY_ATTRIBUTE, NOTIFY_PROGRESS, event_view
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


def progress_delivery(new_image: Mapping[str, Any] | None, record: Mapping[str, Any] | None,
                      base_url: str = "") -> Delivery | None:
    """The ``progress`` webhook one event-table stream record asks for, given the job ``record`` read now (its
    public view, as GET shows it); None for an unmarked event, a job gone, final, or not subscribed."""
    if not new_image or record is None:
        return None
    item = deserialize(new_image)
    if item.get(NOTIFY_ATTRIBUTE) != NOTIFY_PROGRESS or item.get("kind") != "progress":
        return None
    spec = record.get("spec") or {}
    url = spec.get("webhook")
    if not url or "progress" not in (spec.get("webhook_events_filter") or ()) or record.get("status") in FINAL:
        return None
    event = event_view(item)
    view = {**public_view(record, base_url, None), "progress": event}  # links made by the sender (issue 43)
    return Delivery(url=url, event="progress", webhook_id=f"{record['job_id']}.progress.{event['cursor']}",
                    job=view, at=float(event.get("at") or 0.0))
