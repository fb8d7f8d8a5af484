"""``GET /v1/jobs/{id}/events?after=<cursor>&wait=<s>``: a job's events after a cursor, long-polled (issue 38).

The events come from the job event log (runtime/jobs/events.py), with ``queued`` and the final status derived
from the record. A request with nothing new after its cursor waits up to ``wait`` seconds (default
``DEFAULT_WAIT_S``, at most ``MAX_WAIT_S``: API Gateway HTTP APIs end integrations at 30 s), reading the log
and the record every ``POLL_S`` growing to ``MAX_POLL_S`` (each read: one Query and one GetItem, strongly
consistent), and answers as soon as something is there or the job is final. The log is read before the record:
a final record then means every event of its attempts is in the page (the worker writes them before its final
write), so the final status is always the last event and nothing comes after it.

Bad input: ``after`` that is not a cursor this API gave, or ``wait`` outside 0..MAX_WAIT_S: 400 naming the
parameter. Another key's job: 404 (the caller checks the owner before calling ``read``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from runtime.api.problems import ApiError
from runtime.jobs.events import FINAL_CURSOR, PAGE_LIMIT, CursorError, EventLog, events_after, parse_cursor
from runtime.jobs.output_links import OutputLinks

DEFAULT_WAIT_S = 10.0
MAX_WAIT_S = 20.0
POLL_S, MAX_POLL_S = 0.25, 1.0
PARAMETERS = ("after", "wait")


@dataclass(frozen=True)
class EventsQuery:
    after: str | None
    wait_s: float


def parse_events_query(query: Mapping[str, str], record: Mapping[str, Any]) -> EventsQuery:
    """The query string, or 400 naming the parameter: ``after`` must be a cursor this API gave for this job (its
    lease part no later than the job's latest attempt's)."""
    unknown = sorted(set(query) - set(PARAMETERS))
    if unknown:
        raise _bad(unknown[0], f"is not a parameter of this route; use {', '.join(PARAMETERS)}")
    try:
        after = parse_cursor(query.get("after"))
    except CursorError as exc:
        raise _bad("after", str(exc)) from None
    if after is not None and after != FINAL_CURSOR and int(after.split(".")[0]) > int(record.get("lease") or 0):
        raise _bad("after", f"{after!r} is not a cursor of this job; pass the next_cursor of an earlier answer")
    wait = DEFAULT_WAIT_S
    if "wait" in query:
        text = query["wait"].strip()
        if not re.fullmatch(r"[0-9]{1,2}(\.[0-9]{1,3})?", text) or float(text) > MAX_WAIT_S:
            raise _bad("wait", f"must be seconds from 0 to {MAX_WAIT_S:g} (got {text[:20]!r})")
        wait = float(text)
    return EventsQuery(after, wait)


class EventFeed:
    def __init__(self, events: EventLog, get_record: Callable[[str], dict[str, Any] | None], links: OutputLinks,
                 sleep: Callable[[float], None] = time.sleep, monotonic: Callable[[], float] = time.monotonic):
        self._events, self._get, self._links = events, get_record, links
        self._sleep, self._monotonic = sleep, monotonic

    def read(self, job_id: str, query: EventsQuery, record: dict[str, Any]) -> dict[str, Any]:
        """The page after ``query.after``, waiting up to ``query.wait_s`` for one; ``record`` is the caller's read."""
        deadline = self._monotonic() + query.wait_s
        delay = POLL_S
        page: list[dict[str, Any]] = []
        first = True
        while True:
            stored = self._events.after(job_id, query.after, PAGE_LIMIT)
            if not first:
                record = self._get(job_id) or record
            first = False
            page = events_after(record, stored, query.after, self._links, PAGE_LIMIT)
            left = deadline - self._monotonic()
            if page or left <= 0:
                break
            self._sleep(min(delay, left))
            delay = min(MAX_POLL_S, delay * 1.5)
        cursor = page[-1]["cursor"] if page else query.after
        return {"job_id": job_id, "events": page, "next_cursor": cursor, "final": cursor == FINAL_CURSOR}


def _bad(name: str, message: str) -> ApiError:
    return ApiError(400, "bad-request", "Bad Request", f"query parameter {name}: {message}",
                    errors=[{"field": f"query.{name}", "rule": "format", "message": message}])
