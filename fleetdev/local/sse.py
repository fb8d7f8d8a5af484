"""Server-Sent Events for ``GET /v1/jobs/{id}/events`` in local mode (issue 38; docs/api.md "Job events").

AWS cannot stream this API (API Gateway HTTP APIs buffer the integration's answer; Lambda response streaming is
for Node.js and custom runtimes, and function URLs authenticate with IAM or not at all), so on AWS clients
long-poll. The local server can: a request with ``Accept: text/event-stream`` is answered as a stream built from
the same long-poll route, page after page, through the same handler (auth, ownership, 400/404 as JSON before the
stream starts). Each event is ``id: <cursor>``, ``event: <kind>``, ``data: <the event as JSON>``; a client that
reconnects sends ``Last-Event-ID`` (or ``after``) and resumes after it. The stream ends after the final status;
a ``: keep-alive`` comment is sent when a long-poll round found nothing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

EVENTS_PATH = re.compile(r"^/v1/jobs/[^/]+/events/?$")
ROUND_WAIT_S = "10"


def wants_stream(method: str, target: str, headers: dict[str, str]) -> bool:
    return (method == "GET" and bool(EVENTS_PATH.match(urlsplit(target).path))
            and "text/event-stream" in headers.get("accept", ""))


def frame(event: dict[str, Any]) -> bytes:
    """One SSE message (the JSON has no newline, so one ``data:`` line)."""
    return (f"id: {event['cursor']}\nevent: {event.get('kind', 'message')}\n"
            f"data: {json.dumps(event, separators=(',', ':'))}\n\n").encode()


def stream(target: str, headers: dict[str, str], call: Callable[[str], dict[str, Any]],
           start: Callable[[int, dict[str, str]], None], write: Callable[[bytes], None],
           reply: Callable[[dict[str, Any]], None]) -> None:
    """Serve the stream: ``call(target)`` runs one long-poll request through the API handler; ``start(status,
    headers)`` begins the streamed answer, ``write`` sends bytes (raises when the client left), ``reply`` sends
    an ordinary answer (an error before the stream started)."""
    parts = urlsplit(target)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    cursor = headers.get("last-event-id") or query.get("after")
    query["wait"] = query.get("wait", ROUND_WAIT_S)
    started = False
    while True:
        if cursor:
            query["after"] = cursor
        result = call(f"{parts.path}?{urlencode(query)}")
        if int(result["statusCode"]) != 200:
            if not started:
                reply(result)
            return
        page = json.loads(result["body"])
        if not started:
            start(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
            started = True
        for event in page["events"]:
            write(frame(event))
        if not page["events"]:
            write(b": keep-alive\n\n")
        cursor = page["next_cursor"]
        if page["final"]:
            return
