"""Issue 44 (lane F) in the client: ``delete`` and the ``metadata`` filter of ``list``, sync and async, against a
MockTransport: the requests they make and the answers they read."""

from __future__ import annotations

import asyncio
import json

import httpx

from genai_fleet_client import AsyncClient, Client

TOMBSTONE = {"id": "j_01", "status": "succeeded", "outputs": [], "inputs": {}, "metadata": {},
             "deleted_at": "2026-12-08T03:00:00.000Z"}


def _handler(seen: list[httpx.Request]):
    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "DELETE":
            return httpx.Response(200, json=TOMBSTONE)
        return httpx.Response(200, json={"jobs": [TOMBSTONE], "next_cursor": None})
    return handle


def test_the_sync_client_deletes_and_filters_by_label():
    seen: list[httpx.Request] = []
    with Client("k", "http://api.test", http=httpx.Client(transport=httpx.MockTransport(_handler(seen)))) as client:
        job = client.delete("j_01")
        page = client.list(metadata={"user": "u-1", "kind": "avatar"}, status="succeeded")
    assert job.id == "j_01" and job.raw["deleted_at"] and job.outputs == []
    assert (seen[0].method, seen[0].url.path) == ("DELETE", "/v1/jobs/j_01")
    assert dict(seen[1].url.params) == {"metadata.user": "u-1", "metadata.kind": "avatar", "status": "succeeded"}
    assert [j.id for j in page.jobs] == ["j_01"]


def test_the_async_client_does_the_same():
    seen: list[httpx.Request] = []

    async def run():
        http = httpx.AsyncClient(transport=httpx.MockTransport(_handler(seen)))
        client = AsyncClient("k", "http://api.test", http=http)
        try:
            return await client.delete("j_01"), await client.list(metadata={"user": "u-1"})
        finally:
            await http.aclose()

    job, page = asyncio.run(run())
    assert job.raw == TOMBSTONE and [j.id for j in page.jobs] == ["j_01"]
    assert seen[0].method == "DELETE" and dict(seen[1].url.params) == {"metadata.user": "u-1"}
    assert json.loads(seen[0].content or b"null") is None
