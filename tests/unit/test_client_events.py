"""Issue 38 (3): the async client follows a job's events as the sync one does: the same requests (cursor, wait),
the same events in order, ending at the final status, retrying a 503 page without losing or repeating one."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from genai_fleet_client import AsyncClient, Client

PAGES = {  # after -> (events, next_cursor, final)
    None: ([{"cursor": "000000.000000", "kind": "status", "status": "queued"},
            {"cursor": "000001.000000", "kind": "status", "status": "running"}], "000001.000000", False),
    "000001.000000": ([{"cursor": "000001.000001", "kind": "progress", "percent": 50.0}], "000001.000001", False),
    "000001.000001": ([], "000001.000001", False),  # a long-poll that ran out: same cursor again
}
FINAL = ([{"cursor": "999999.999999", "kind": "status", "status": "succeeded"}], "999999.999999", True)


class Api:
    """The events route over httpx's MockTransport: pages by cursor; the first read after 50 % answers 503."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.empty_reads = 0
        self.failed = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        params = dict(request.url.params)
        self.requests.append(params)
        assert request.url.path == "/v1/jobs/j_1/events" and request.headers["Authorization"] == "Bearer k"
        after = params.get("after")
        if after == "000001.000001":
            if not self.failed:
                self.failed = True
                return httpx.Response(503, headers={"Retry-After": "0"}, json={"title": "busy", "status": 503})
            self.empty_reads += 1
            events, cursor, final = PAGES[after] if self.empty_reads == 1 else FINAL
        else:
            events, cursor, final = PAGES[after]
        return httpx.Response(200, json={"job_id": "j_1", "events": events, "next_cursor": cursor, "final": final})


def _sync() -> tuple[list[dict[str, Any]], Api]:
    api = Api()
    client = Client("k", "http://api.test", http=httpx.Client(transport=httpx.MockTransport(api)), sleep=lambda s: None)
    return list(client.follow("j_1", wait_s=5)), api


def _async() -> tuple[list[dict[str, Any]], Api]:
    api = Api()

    async def follow() -> list[dict[str, Any]]:
        async def no_sleep(_s: float) -> None:
            return None

        async with AsyncClient("k", "http://api.test", http=httpx.AsyncClient(transport=httpx.MockTransport(api)),
                               sleep=no_sleep) as client:
            first = await client.events("j_1", wait_s=0)
            assert [e["status"] for e in first["events"]] == ["queued", "running"]
            return [event async for event in client.follow("j_1", wait_s=5)]

    loop = asyncio.new_event_loop()  # its own loop: asyncio.run would leave the thread without one (Pulumi mocks)
    try:
        return loop.run_until_complete(follow()), api
    finally:
        loop.close()


def test_the_async_client_follows_events_like_the_sync_one():
    seen, api = _async()
    expected, sync_api = _sync()
    assert seen == expected
    assert [e["cursor"] for e in seen] == ["000000.000000", "000001.000000", "000001.000001", "999999.999999"]
    assert seen[-1]["status"] == "succeeded"
    assert api.requests[0] == {"wait": "0"}  # events(): wait 0, from the start
    assert api.requests[1:] == sync_api.requests  # the same cursors and waits, the 503 retried at the same cursor
    assert {"wait": "5", "after": "000001.000001"} in api.requests
