"""The per-job event log (issue 38): an ordered, resumable list of what happened to a job, in a table of its own.

Table (components/job_events_table.py declares it; ``create_events_table`` makes it in tests and local mode)::

    job_id  (S, hash)   the job
    cursor  (S, range)  "<lease:06d>.<seq:06d>": the attempt's lease (the fencing token: a new, larger one for
                        every claim, counted or handed back, so never reused) then the event's number within
                        the attempt. Sorting by it orders a job's events across attempts and worker kills.
    kind, attempt, at, data, expires_at (TTL: ``EVENT_TTL_SECONDS`` after the write)

A table of its own, not items in the job table: the job table's stream drives the webhooks
(components/job_events.py filters on ``eventName`` only), and progress writes must not invoke that Lambda.
This table's own stream (new images) feeds only the opt-in ``progress`` webhook: its mapping passes only the
items the worker marked ``notify = "progress"`` (``NOTIFY_ATTRIBUTE``; at most one per job every
``PROGRESS_WEBHOOK_INTERVAL_S``, runtime/worker/progress_reporter.py), so the rest invoke nothing.

Only the worker that holds an attempt writes that attempt's events, from one thread in order
(runtime/worker/progress_reporter.py), so within an attempt the log only grows at its end. Two events the
log never stores are derived from the job record when read (``events_after``): ``queued`` at
``QUEUED_CURSOR`` (created) and the final status at ``FINAL_CURSOR`` (sorts after every attempt: a client
holding it gets nothing more, so there are no events after final).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.jobs.errors import StoreUnavailableError
from runtime.jobs.items import deserialize, serialize
from runtime.jobs.output_links import OutputLinks

log = logging.getLogger(__name__)

EVENT_TTL_SECONDS = 3 * 86400  # a client that never reads costs this much storage at most (docs/api.md)
CURSOR_RE = re.compile(r"^\d{6}\.\d{6}$")
QUEUED_CURSOR = "000000.000000"
FINAL_CURSOR = "999999.999999"
FINAL_STATUSES = ("succeeded", "failed", "canceled")
PAGE_LIMIT = 100
NOTIFY_ATTRIBUTE, NOTIFY_PROGRESS = "notify", "progress"  # an event item the progress webhook sends (issue 38)
PROGRESS_WEBHOOK_INTERVAL_S = 5.0  # at most one progress webhook per job attempt this often (docs/api.md)
_BATCH = 25  # BatchWriteItem's most items per call


class CursorError(ValueError):
    """A cursor that is not one this API gave out."""


def make_cursor(lease: int, seq: int) -> str:
    if not 0 < lease < 999999 or not 0 <= seq < 999999:
        raise ValueError(f"cursor out of range: lease {lease}, seq {seq}")
    return f"{lease:06d}.{seq:06d}"


def parse_cursor(value: str | None) -> str | None:
    """A client's ``after`` value: None (from the start) or a cursor; anything else raises CursorError."""
    if value is None or value == "":
        return None
    if not CURSOR_RE.match(value):
        raise CursorError("after must be a cursor from an earlier answer (like '000003.000012'), "
                          f"not {value[:40]!r}")
    return value


class EventLog:
    """Reads and writes the event table (client: a boto3 DynamoDB client)."""

    def __init__(self, table_name: str, client: Any, clock: Any = time.time) -> None:
        self.table_name, self.client, self._clock = table_name, client, clock

    def append(self, job_id: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Write events (each with ``cursor``, ``kind``, ``attempt``, ``at``, ``data``); idempotent per cursor."""
        expires = int(self._clock() + EVENT_TTL_SECONDS)
        items = [serialize({**event, "job_id": job_id, "expires_at": expires}) for event in events]
        for start in range(0, len(items), _BATCH):
            requests = [{"PutRequest": {"Item": item}} for item in items[start:start + _BATCH]]
            for _ in range(5):
                resp = self._call("batch_write_item", RequestItems={self.table_name: requests})
                requests = (resp.get("UnprocessedItems") or {}).get(self.table_name) or []
                if not requests:
                    break
            else:
                raise StoreUnavailableError(f"events of job {job_id}: {len(requests)} left unprocessed")

    def after(self, job_id: str, cursor: str | None, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
        """The stored events after ``cursor`` (None: all), oldest first, at most ``limit``."""
        # "cursor" is a DynamoDB reserved word: named through #c. An absent cursor reads from the first one.
        resp = self._call("query", TableName=self.table_name, KeyConditionExpression="job_id = :j AND #c > :c",
                          ExpressionAttributeNames={"#c": "cursor"},
                          ExpressionAttributeValues={":j": {"S": job_id}, ":c": {"S": cursor or QUEUED_CURSOR}},
                          ConsistentRead=True, Limit=limit)
        return [event_view(deserialize(item)) for item in resp.get("Items", [])]

    def latest_progress(self, job_id: str) -> dict[str, Any] | None:
        """The newest progress event of the job (one Query of up to a few items, newest first)."""
        resp = self._call("query", TableName=self.table_name, KeyConditionExpression="job_id = :j",
                          ExpressionAttributeValues={":j": {"S": job_id}}, ScanIndexForward=False, Limit=4,
                          ConsistentRead=True)
        for item in resp.get("Items", []):
            event = event_view(deserialize(item))
            if event["kind"] == "progress":
                return event
        return None

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, method)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"event log {method} failed: {exc}") from exc


def event_view(item: Mapping[str, Any]) -> dict[str, Any]:
    """An event as clients see it, from its stored item (deserialized)."""
    return {"cursor": item["cursor"], "kind": item.get("kind"), "attempt": item.get("attempt"),
            "at": item.get("at"), **(item.get("data") or {})}


def events_after(record: Mapping[str, Any], stored: Sequence[Mapping[str, Any]], cursor: str | None,
                 links: OutputLinks, limit: int = PAGE_LIMIT) -> list[dict[str, Any]]:
    """What a client after ``cursor`` sees: ``queued`` (from the record), the stored events, and the final status
    (from the record, its output links made now by ``links``) once the record is final. Stored events are read
    before the record, so a final record means every event its attempts wrote is already in ``stored`` (the
    worker flushes before its final write)."""
    out: list[dict[str, Any]] = []
    if cursor is None:
        out.append({"cursor": QUEUED_CURSOR, "kind": "status", "status": "queued", "attempt": 0,
                    "at": record.get("created_at")})
    out.extend(_linked(event, links) for event in stored if (cursor or "") < event["cursor"] < FINAL_CURSOR)
    out = out[:limit]
    if record.get("status") in FINAL_STATUSES and len(out) < limit and (cursor or "") < FINAL_CURSOR:
        final: dict[str, Any] = {"cursor": FINAL_CURSOR, "kind": "status", "status": record["status"],
                                 "attempt": record.get("attempts"), "at": record.get("completed_at")}
        if record.get("outputs"):
            final["outputs"] = [links.link(o) for o in record["outputs"] if isinstance(o, Mapping)]
        if record.get("error"):
            final["error"] = record["error"]
        out.append(final)
    return out


def _linked(event: Mapping[str, Any], links: OutputLinks) -> dict[str, Any]:
    """A stored event as handed out: a preview's ``url`` made now from its stored ``key`` (issue 38), like outputs."""
    out = dict(event)
    if out.get("kind") == "preview" and out.get("key"):
        out["url"] = links.url(str(out["key"]))
    return out


def create_events_table(client: Any, table_name: str) -> None:
    """Create the event table as components/job_events_table.py declares it (tests and local mode only)."""
    client.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "job_id", "AttributeType": "S"},
                              {"AttributeName": "cursor", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "job_id", "KeyType": "HASH"}, {"AttributeName": "cursor", "KeyType": "RANGE"}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"})  # the progress webhook
    try:
        client.update_time_to_live(TableName=table_name,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    except ClientError:
        log.debug("could not enable TTL on %s", table_name)
