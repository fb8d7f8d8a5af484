"""The asyncio client: ``AsyncClient`` has the methods of ``Client`` as coroutines (``iter_jobs`` is an
async iterator), with the same retries (``_protocol``) and the same results and errors."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

from genai_fleet_client import _protocol as p
from genai_fleet_client.client import MAX_URL_REFRESHES, OnUpdate
from genai_fleet_client.errors import ApiError, WaitTimeoutError
from genai_fleet_client.types import Job, JobPage


class AsyncClient:
    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, timeout_s: float = 30.0,
                 max_retry_wait_s: float = 60.0, network_retry_s: float = 60.0, poll_interval_s: float = 0.5,
                 http: httpx.AsyncClient | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic, on_retry: p.OnRetry | None = None):
        self.settings = p.settings_from(api_key, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s,
                                        network_retry_s=network_retry_s, poll_interval_s=poll_interval_s)
        self._http = http or httpx.AsyncClient(timeout=timeout_s)
        self._sleep, self._clock, self._on_retry = sleep, clock, on_retry

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                       extra_headers: Mapping[str, str] | None = None, read_timeout_s: float | None = None
                       ) -> dict[str, Any]:
        retrier = p.Retrier(self.settings, self._clock, self._on_retry)
        timeout = httpx.Timeout(self.settings.timeout_s, read=read_timeout_s or self.settings.timeout_s)
        while True:
            try:
                resp = await self._http.request(method, self.settings.base_url + path, json=json, params=params,
                                                headers=p.headers(self.settings, extra_headers), timeout=timeout)
            except httpx.TransportError as exc:
                await self._sleep(retrier.after_network_error(exc))
                continue
            retrier.succeeded()
            try:
                return p.result(resp.status_code, resp.headers, resp.content)
            except ApiError as error:
                await self._sleep(retrier.after_api_error(error))

    async def submit(self, model: str, inputs: Mapping[str, Any], task: str | None = None, *,
                     webhook: str | None = None, webhook_events: list[str] | None = None,
                     idempotency_key: str | None = None, wait_s: int = 0) -> Job:
        extra = {"Idempotency-Key": idempotency_key or p.new_idempotency_key()}
        if wait_s > 0:
            extra["Prefer"] = f"wait={min(int(wait_s), p.MAX_SYNC_WAIT_S)}"
        body = p.job_body(model, inputs, task, webhook, webhook_events)
        return Job.from_api(await self._request("POST", "/v1/jobs", json=body, extra_headers=extra,
                                                read_timeout_s=self.settings.timeout_s + max(0, wait_s)))

    async def get(self, job_id: str) -> Job:
        return Job.from_api(await self._request("GET", f"/v1/jobs/{job_id}"))

    async def cancel(self, job_id: str) -> Job:
        return Job.from_api(await self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    async def list(self, *, status: str | list[str] | None = None, limit: int | None = None,
                   cursor: str | None = None, metadata: Mapping[str, str] | None = None) -> JobPage:
        return JobPage.from_api(await self._request("GET", "/v1/jobs",
                                                    params=p.list_params(status, limit, cursor, metadata)))

    async def delete(self, job_id: str) -> Job:
        """Delete a final job's outputs, inputs and prompt (issue 44); its tombstone, the same on a second call."""
        return Job.from_api(await self._request("DELETE", f"/v1/jobs/{job_id}"))

    async def events(self, job_id: str, *, after: str | None = None, wait_s: float = 10.0) -> dict[str, Any]:
        """One page of the job's events after the cursor ``after``, as ``Client.events``:
        ``{"events", "next_cursor", "final"}``, the API waiting up to ``wait_s`` (at most 20) for one."""
        return await self._request("GET", f"/v1/jobs/{job_id}/events", params=p.events_params(after, wait_s),
                                   read_timeout_s=self.settings.timeout_s + wait_s)

    async def follow(self, job_id: str, *, after: str | None = None,
                     wait_s: float = 10.0) -> AsyncIterator[dict[str, Any]]:
        """Every event of the job after ``after``, oldest first, until its final status (as ``Client.follow``):
        each page resumes from the last cursor, so nothing is lost or repeated across retries and kills."""
        cursor = after
        while True:
            page = await self.events(job_id, after=cursor, wait_s=wait_s)
            for event in page["events"]:
                yield event
            cursor = page["next_cursor"]
            if page["final"]:
                return

    async def iter_jobs(self, *, status: str | list[str] | None = None,
                        page_size: int | None = None) -> AsyncIterator[Job]:
        cursor = None
        while True:
            page = await self.list(status=status, limit=page_size, cursor=cursor)
            for job in page.jobs:
                yield job
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def wait(self, job: Job | str, *, timeout_s: float | None = None, on_update: OnUpdate | None = None) -> Job:
        current = job if isinstance(job, Job) else await self.get(job)
        started = self._clock()
        while True:
            if on_update is not None:
                on_update(current)
            if current.done:
                return current
            waited = self._clock() - started
            if timeout_s is not None and waited >= timeout_s:
                raise WaitTimeoutError(current, waited)
            await self._sleep(self.settings.poll_interval_s)
            current = await self.get(current.id)

    async def run(self, model: str, inputs: Mapping[str, Any], task: str | None = None, *,
                  timeout_s: float | None = 600.0, on_update: OnUpdate | None = None,
                  idempotency_key: str | None = None, webhook: str | None = None,
                  webhook_events: list[str] | None = None) -> Job:
        wait_s = 0 if on_update is not None else p.sync_wait_seconds(timeout_s)
        job = await self.submit(model, inputs, task, webhook=webhook, webhook_events=webhook_events,
                                idempotency_key=idempotency_key, wait_s=wait_s)
        return p.succeeded(await self.wait(job, timeout_s=timeout_s, on_update=on_update))

    async def download(self, job: Job | str, directory: str | Path) -> list[Path]:
        current = job if isinstance(job, Job) else await self.get(job)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(len(current.outputs)):
            for refresh in range(MAX_URL_REFRESHES + 1):
                output = current.outputs[index]
                path = target / p.output_name(current.id, index, output.url, output.content_type)
                status = await self._fetch(output.url, path)
                if status != 403 or refresh == MAX_URL_REFRESHES:
                    break
                current = await self.get(current.id)
            p.check_download(status, output.url)
            paths.append(path)
        return paths

    async def _fetch(self, url: str, path: Path) -> int:
        retrier = p.Retrier(self.settings, self._clock, self._on_retry)
        while True:
            try:
                async with self._http.stream("GET", url, timeout=self.settings.timeout_s) as resp:
                    if resp.status_code != 200:
                        return resp.status_code
                    with p.partial_file(path) as out:
                        async for chunk in resp.aiter_bytes():
                            out.write(chunk)
                    return 200
            except httpx.TransportError as exc:
                await self._sleep(retrier.after_network_error(exc))
