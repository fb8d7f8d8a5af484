"""What the sync and asyncio clients share: settings, headers, answers to results or errors, retry pacing.

Retries (one ``Retrier`` per call):

- ``429 rate-limited``, ``503`` (and other 5xx) and ``409 request-in-progress`` (an Idempotency-Key's
  first request still in flight) are retried after the server's ``Retry-After`` (1 s when absent), as long
  as the seconds slept for this call stay within ``max_retry_wait``; past it the error is raised.
- ``429 quota-exceeded`` is raised at once: its ``Retry-After`` runs to midnight UTC.
- A dropped or refused connection is retried with backoff (0.5 s doubling to 8 s) for
  ``network_retry_seconds`` counted from the first failure in a row; then ``NetworkError``. Every request
  is safe to repeat: reads and cancels are idempotent, and a create always carries an Idempotency-Key
  (one is made when the caller gives none), so a create resent after a lost answer returns the same job.
"""

from __future__ import annotations

import contextlib
import json
import math
import mimetypes
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from genai_fleet_client.errors import (
    ApiError,
    DownloadError,
    JobCanceledError,
    JobFailedError,
    NetworkError,
    QuotaExceededError,
    RequestRejectedError,
    error_for,
)
from genai_fleet_client.types import Job

ENV_API_KEY = "GENAI_FLEET_API_KEY"
ENV_API_URL = "GENAI_FLEET_API_URL"
MAX_SYNC_WAIT_S = 25  # the API waits at most 25 s on Prefer: wait
NETWORK_BACKOFF_S = (0.5, 1.0, 2.0, 4.0, 8.0)
OnRetry = Callable[[str, float], None]  # (why, seconds about to be slept): lets a command say it is waiting


@dataclass(frozen=True)
class Settings:
    base_url: str
    api_key: str | None
    timeout_s: float = 30.0
    max_retry_wait_s: float = 60.0
    network_retry_s: float = 60.0
    poll_interval_s: float = 0.5


def settings_from(api_key: str | None, base_url: str | None, **options: Any) -> Settings:
    base_url = base_url or os.environ.get(ENV_API_URL)
    if not base_url:
        raise ValueError(f"no API URL: pass base_url or set {ENV_API_URL}")
    if not base_url.startswith(("http://", "https://")):
        raise ValueError("the API URL must start with http:// or https://")
    return Settings(base_url=base_url.rstrip("/"), api_key=api_key or os.environ.get(ENV_API_KEY) or None,
                    **options)


def headers(settings: Settings, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    out = {"Accept": "application/json", "User-Agent": "genai-fleet-client/0.1"}
    if settings.api_key:
        out["Authorization"] = f"Bearer {settings.api_key}"
    out.update(extra or {})
    return out


def new_idempotency_key() -> str:
    return f"gfc-{uuid.uuid4()}"


def job_body(model: str, inputs: Mapping[str, Any], task: str | None, webhook: str | None,
             webhook_events: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model, "inputs": dict(inputs)}
    if task:
        body["task"] = task
    if webhook:
        body["webhook"] = webhook
    if webhook_events:
        body["webhook_events_filter"] = list(webhook_events)
    return body


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds only, as this API sends it); None when absent or unreadable."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and math.isfinite(seconds) and seconds >= 0 else None


def result(status: int, response_headers: Mapping[str, str], content: bytes) -> dict[str, Any]:
    """The JSON body of a 2xx answer; any other answer raised as the ``ApiError`` it stands for."""
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        body = None
    if 200 <= status < 300 and isinstance(body, dict):
        return body
    if not isinstance(body, dict) or "status" not in body:  # not a problem document (a proxy, a gateway)
        text = content[:200].decode("utf-8", "replace").strip() if content else ""
        body = {"type": "about:blank", "title": f"HTTP {status}", "status": status,
                "detail": text or f"the API answered {status} without a problem document"}
    if 200 <= status < 300:
        raise RequestRejectedError(status, {**body, "detail": "the API answered with a body that is not a JSON "
                                                              "object"})
    raise error_for(status, body, retry_after(response_headers.get("retry-after")))


class Retrier:
    """How long to sleep before repeating one call, or the error to raise (module docstring)."""

    def __init__(self, settings: Settings, clock: Any, on_retry: OnRetry | None = None):
        self._settings, self._clock, self._on_retry = settings, clock, on_retry
        self.slept = 0.0
        self._network_since: float | None = None
        self._network_tries = 0

    def after_api_error(self, error: ApiError) -> float:
        retryable = (error.status >= 500 or error.type == "rate-limited"
                     or (error.status == 409 and error.type == "request-in-progress"))
        if isinstance(error, QuotaExceededError) or not retryable:
            raise error
        delay = 1.0 if error.retry_after is None else error.retry_after
        if self.slept + delay > self._settings.max_retry_wait_s:
            raise error
        self.slept += delay
        self._network_since, self._network_tries = None, 0
        if self._on_retry is not None:
            self._on_retry(error.message(), delay)
        return delay

    def after_network_error(self, exc: Exception) -> float:
        now = self._clock()
        if self._network_since is None:
            self._network_since = now
        delay = NETWORK_BACKOFF_S[min(self._network_tries, len(NETWORK_BACKOFF_S) - 1)]
        self._network_tries += 1
        if now - self._network_since + delay > self._settings.network_retry_s:
            raise NetworkError(f"could not reach the API for {now - self._network_since:.0f} s "
                               f"({type(exc).__name__})") from exc
        if self._on_retry is not None:
            self._on_retry(f"connection lost ({type(exc).__name__})", delay)
        return delay

    def succeeded(self) -> None:
        self._network_since, self._network_tries = None, 0


def sync_wait_seconds(timeout_s: float | None) -> int:
    """The ``Prefer: wait`` to ask for: all of the caller's wait that the API allows."""
    if timeout_s is None:
        return MAX_SYNC_WAIT_S
    return max(0, min(MAX_SYNC_WAIT_S, int(timeout_s)))


def output_name(job_id: str, index: int, url: str, content_type: str | None) -> str:
    """``<job id>-<index><ext>``: the extension from the URL's file name, else from the content type."""
    leaf = urlsplit(url).path.rsplit("/", 1)[-1]
    ext = "." + leaf.rsplit(".", 1)[1] if "." in leaf else ""
    if not ext or len(ext) > 6 or not ext[1:].isalnum():
        ext = mimetypes.guess_extension((content_type or "").split(";")[0].strip()) or ".bin"
    return f"{job_id}-{index}{ext}"


def list_params(status: str | list[str] | None, limit: int | None, cursor: str | None,
                metadata: Mapping[str, str] | None = None) -> dict[str, str]:
    """The query of GET /v1/jobs; ``metadata`` (issue 44): only jobs with each label, ``metadata.<key>=<value>``."""
    params: dict[str, str] = {f"metadata.{k}": v for k, v in (metadata or {}).items()}
    if status:
        params["status"] = status if isinstance(status, str) else ",".join(status)
    if limit is not None:
        params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return params


def succeeded(job: Job) -> Job:
    """The job when it succeeded; ``JobFailedError`` / ``JobCanceledError`` otherwise."""
    if job.status == "failed":
        raise JobFailedError(job)
    if job.status == "canceled":
        raise JobCanceledError(job)
    return job


def check_download(status: int, url: str) -> None:
    if status != 200:
        path = urlsplit(url).path
        raise DownloadError(f"downloading output {path.rsplit('/', 1)[-1] or path} answered HTTP {status}")


@contextlib.contextmanager
def partial_file(path: Path) -> Iterator[Any]:
    """Write ``path`` through ``<path>.part``, renamed into place only when complete."""
    part = path.with_name(path.name + ".part")
    try:
        with part.open("wb") as out:
            yield out
        part.replace(path)
    finally:
        part.unlink(missing_ok=True)


MAX_EVENTS_WAIT_S = 20.0  # the API's longest long-poll of GET /v1/jobs/{id}/events


def events_params(after: str | None, wait_s: float) -> dict[str, str]:
    """The query of ``GET /v1/jobs/{id}/events``: the cursor (absent: from the first event) and the wait (0-20 s)."""
    return {"wait": f"{min(max(wait_s, 0.0), MAX_EVENTS_WAIT_S):g}", **({"after": after} if after else {})}
