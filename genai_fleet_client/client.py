"""The synchronous client: ``Client(api_key, base_url).run("sdxl-base-1.0", {"prompt": "..."})``.

Every call repeats itself on rate limits, unavailability and dropped connections as ``_protocol``
describes. ``wait`` follows a job by reading it (``GET /v1/jobs/{id}``, the API has no event stream): it
resumes by itself after a dropped connection, since a read can always be repeated. ``run`` asks for a
synchronous answer (``Prefer: wait``) when nobody wants progress, and follows the job otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from genai_fleet_client import _protocol as p
from genai_fleet_client.errors import ApiError, WaitTimeoutError
from genai_fleet_client.types import Job, JobPage

OnUpdate = Callable[[Job], None]
MAX_URL_REFRESHES = 2  # re-fetches of the job for fresh output URLs when the CDN answers 403


class Client:
    """``api_key`` / ``base_url`` default to ``$GENAI_FLEET_API_KEY`` / ``$GENAI_FLEET_API_URL``."""

    def __init__(self, api_key: str | None = None, base_url: str | None = None, *, timeout_s: float = 30.0,
                 max_retry_wait_s: float = 60.0, network_retry_s: float = 60.0, poll_interval_s: float = 0.5,
                 http: httpx.Client | None = None, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic, on_retry: p.OnRetry | None = None):
        self.settings = p.settings_from(api_key, base_url, timeout_s=timeout_s, max_retry_wait_s=max_retry_wait_s,
                                        network_retry_s=network_retry_s, poll_interval_s=poll_interval_s)
        self._http = http or httpx.Client(timeout=timeout_s)
        self._sleep, self._clock, self._on_retry = sleep, clock, on_retry

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- one request, repeated as _protocol says -------------------------------------------------------
    def _request(self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
                 extra_headers: Mapping[str, str] | None = None, read_timeout_s: float | None = None
                 ) -> dict[str, Any]:
        retrier = p.Retrier(self.settings, self._clock, self._on_retry)
        timeout = httpx.Timeout(self.settings.timeout_s, read=read_timeout_s or self.settings.timeout_s)
        while True:
            try:
                resp = self._http.request(method, self.settings.base_url + path, json=json, params=params,
                                          headers=p.headers(self.settings, extra_headers), timeout=timeout)
            except httpx.TransportError as exc:
                self._sleep(retrier.after_network_error(exc))
                continue
            retrier.succeeded()
            try:
                return p.result(resp.status_code, resp.headers, resp.content)
            except ApiError as error:
                self._sleep(retrier.after_api_error(error))

    # --- the API ---------------------------------------------------------------------------------------
    def submit(self, model: str, inputs: Mapping[str, Any], task: str | None = None, *,
               webhook: str | None = None, webhook_events: list[str] | None = None,
               idempotency_key: str | None = None, wait_s: int = 0) -> Job:
        """Create a job (``POST /v1/jobs``). ``wait_s`` > 0 asks the API to answer when done (at most 25 s)."""
        extra = {"Idempotency-Key": idempotency_key or p.new_idempotency_key()}
        if wait_s > 0:
            extra["Prefer"] = f"wait={min(int(wait_s), p.MAX_SYNC_WAIT_S)}"
        body = p.job_body(model, inputs, task, webhook, webhook_events)
        return Job.from_api(self._request("POST", "/v1/jobs", json=body, extra_headers=extra,
                                          read_timeout_s=self.settings.timeout_s + max(0, wait_s)))

    def get(self, job_id: str) -> Job:
        return Job.from_api(self._request("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        return Job.from_api(self._request("POST", f"/v1/jobs/{job_id}/cancel"))

    def list(self, *, status: str | list[str] | None = None, limit: int | None = None,
             cursor: str | None = None, metadata: Mapping[str, str] | None = None) -> JobPage:
        """One page of the caller's jobs, newest first (``GET /v1/jobs``); ``metadata``: only those with each label."""
        return JobPage.from_api(self._request("GET", "/v1/jobs",
                                              params=p.list_params(status, limit, cursor, metadata)))

    def delete(self, job_id: str) -> Job:
        """Delete a final job's outputs, inputs and prompt (issue 44); its tombstone, the same on a second call."""
        return Job.from_api(self._request("DELETE", f"/v1/jobs/{job_id}"))

    def events(self, job_id: str, *, after: str | None = None, wait_s: float = 10.0) -> dict[str, Any]:
        """One page of the job's events after the cursor ``after`` (``GET /v1/jobs/{id}/events``), the API waiting
        up to ``wait_s`` (at most 20) for one: ``{"events", "next_cursor", "final"}``."""
        return self._request("GET", f"/v1/jobs/{job_id}/events", params=p.events_params(after, wait_s),
                             read_timeout_s=self.settings.timeout_s + wait_s)

    def follow(self, job_id: str, *, after: str | None = None, wait_s: float = 10.0) -> Iterator[dict[str, Any]]:
        """Every event of the job after ``after``, oldest first, until its final status: each page resumes from the
        last cursor, so a retry, a worker kill or a dropped connection neither loses nor repeats an event."""
        cursor = after
        while True:
            page = self.events(job_id, after=cursor, wait_s=wait_s)
            yield from page["events"]
            cursor = page["next_cursor"]
            if page["final"]:
                return

    def iter_jobs(self, *, status: str | list[str] | None = None, page_size: int | None = None) -> Iterator[Job]:
        cursor = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.jobs
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def wait(self, job: Job | str, *, timeout_s: float | None = None, on_update: OnUpdate | None = None) -> Job:
        """Read the job until it is final (or ``timeout_s`` runs out: ``WaitTimeoutError``)."""
        current = job if isinstance(job, Job) else self.get(job)
        started = self._clock()
        while True:
            if on_update is not None:
                on_update(current)
            if current.done:
                return current
            waited = self._clock() - started
            if timeout_s is not None and waited >= timeout_s:
                raise WaitTimeoutError(current, waited)
            self._sleep(self.settings.poll_interval_s)
            current = self.get(current.id)

    def run(self, model: str, inputs: Mapping[str, Any], task: str | None = None, *,
            timeout_s: float | None = 600.0, on_update: OnUpdate | None = None,
            idempotency_key: str | None = None, webhook: str | None = None,
            webhook_events: list[str] | None = None) -> Job:
        """Submit and wait; the succeeded job, or ``JobFailedError`` / ``JobCanceledError``."""
        wait_s = 0 if on_update is not None else p.sync_wait_seconds(timeout_s)
        job = self.submit(model, inputs, task, webhook=webhook, webhook_events=webhook_events,
                          idempotency_key=idempotency_key, wait_s=wait_s)
        job = self.wait(job, timeout_s=timeout_s, on_update=on_update)
        return p.succeeded(job)

    def download(self, job: Job | str, directory: str | Path) -> list[Path]:
        """Write the job's outputs into ``directory`` (``<job id>-<n><ext>``); fresh URLs on a CDN 403."""
        current = job if isinstance(job, Job) else self.get(job)
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        paths = []
        for index in range(len(current.outputs)):
            for refresh in range(MAX_URL_REFRESHES + 1):
                output = current.outputs[index]
                path = target / p.output_name(current.id, index, output.url, output.content_type)
                status = self._fetch(output.url, path)
                if status != 403 or refresh == MAX_URL_REFRESHES:
                    break
                current = self.get(current.id)  # signed URLs expire: the job's view has fresh ones
            p.check_download(status, output.url)
            paths.append(path)
        return paths

    def _fetch(self, url: str, path: Path) -> int:
        retrier = p.Retrier(self.settings, self._clock, self._on_retry)
        while True:
            try:
                with self._http.stream("GET", url, timeout=self.settings.timeout_s) as resp:
                    if resp.status_code != 200:
                        return resp.status_code
                    with p.partial_file(path) as out:
                        for chunk in resp.iter_bytes():
                            out.write(chunk)
                    return 200
            except httpx.TransportError as exc:
                self._sleep(retrier.after_network_error(exc))
