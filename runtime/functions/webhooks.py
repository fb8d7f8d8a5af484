"""Signed webhooks, sent by the webhook dispatcher (runtime.functions.webhook_dispatch) as a job starts, outputs, ends.

Wire format (documented for receivers in docs/api.md)::

    POST <webhook URL>
    Content-Type: application/json
    Webhook-Id: <job_id>.<event>          stable across retries: receivers deduplicate on it
    Webhook-Event: start | output | completed
    Webhook-Timestamp: <unix seconds>
    Webhook-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>

    {"event": "completed", "job": <the job as GET /v1/jobs/{id} shows it>}

Receivers recompute the HMAC over ``f"{t}.{body}"`` with the shared secret, compare in constant time
and reject timestamps older than a few minutes (``verify_signature`` does all three).

Delivery: at most ``max_attempts`` tries with exponential backoff and jitter (``Retry-After`` honoured
up to ``max_delay_s``), retrying on network errors, 408, 425, 429 and 5xx; other answers are final.
Redirects are not followed. Before every try the URL goes through
``runtime.net_safety.resolve_and_check`` and the request is pinned to the checked address, so no
webhook reaches private, loopback, link-local (instance metadata) or other non-public addresses;
``allow_loopback`` exists for local mode only. A refused URL is a final failure, never retried.

Errors never escape ``send``: it returns a ``DeliveryResult``; webhook trouble must not fail a job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from runtime.jobs.views import public_view
from runtime.net_safety import Resolver, UnsafeURLError, pinned_request, resolve_and_check

log = logging.getLogger(__name__)

EVENTS = ("start", "output", "completed")
SIGNATURE_HEADER = "Webhook-Signature"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "genai-fleet-webhooks/1"


def sign(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """The ``Webhook-Signature`` header value for ``body`` sent at ``timestamp``."""
    key = secret.encode() if isinstance(secret, str) else secret
    digest = hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={int(timestamp)},v1={digest}"


def verify_signature(secret: bytes | str, header: str, body: bytes, tolerance_s: float = 300.0,
                     now: float | None = None) -> bool:
    """Receiver side: True when ``header`` signs ``body`` with ``secret`` and is fresh enough."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    return any(hmac.compare_digest(expected, value) for key, value in
               (item.split("=", 1) for item in header.split(",")) if key == "v1")


def load_secret_from_ssm(ssm_client: Any, parameter_name: str) -> bytes:
    """Read the signing secret from an SSM SecureString parameter."""
    resp = ssm_client.get_parameter(Name=parameter_name, WithDecryption=True)
    return resp["Parameter"]["Value"].encode()


@dataclass(frozen=True)
class DeliveryResult:
    delivered: bool
    attempts: int
    status_code: int | None = None
    error: str | None = None


class WebhookSender:
    """Sends signed webhook events with retries; safe to share between threads."""

    def __init__(self, secret: bytes | str, allow_loopback: bool = False, max_attempts: int = 5,
                 base_delay_s: float = 0.5, max_delay_s: float = 30.0, timeout_s: float = 5.0,
                 resolver: Resolver | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time):
        if not secret:
            raise ValueError("a webhook signing secret is required")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.allow_loopback = allow_loopback
        self.max_attempts = max(1, max_attempts)
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self._resolver, self._sleep, self._rng, self._clock = resolver, sleep, rng, clock
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport,
                                    headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._client.close()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before try ``attempt + 1``: exponential, capped, with 'equal jitter' (half fixed)."""
        if retry_after is not None:
            return min(self.max_delay_s, max(0.0, retry_after))
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return ceiling / 2 + self._rng() * ceiling / 2

    def notify(self, record: Mapping[str, Any], event: str, base_url: str = "") -> DeliveryResult | None:
        """Send ``event`` for a job record when its spec asks for it; None when nothing was to send."""
        spec = record.get("spec") or {}
        url = spec.get("webhook")
        if not url or event not in (spec.get("webhook_events_filter") or ()):
            return None
        return self.send(url, event, public_view(record, base_url), webhook_id=f"{record['job_id']}.{event}")

    def send(self, url: str, event: str, job: Mapping[str, Any], webhook_id: str | None = None) -> DeliveryResult:
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; use one of {', '.join(EVENTS)}")
        body = json.dumps({"event": event, "job": dict(job)}, separators=(",", ":"), default=str).encode()
        wid = webhook_id or f"{job.get('id', 'job')}.{event}"
        last = DeliveryResult(False, 0, error="not sent")
        for attempt in range(1, self.max_attempts + 1):
            last, retry, retry_after = self._try_once(url, event, body, wid, attempt)
            if last.delivered or not retry:
                break
            if attempt < self.max_attempts:
                self._sleep(self.backoff(attempt, retry_after))
        level = logging.INFO if last.delivered else logging.WARNING
        log.log(level, "webhook %s to %s: delivered=%s after %d attempt(s) status=%s error=%s", wid,
                _redact(url), last.delivered, last.attempts, last.status_code, last.error)
        return last

    def try_once(self, url: str, event: str, job: Mapping[str, Any], webhook_id: str,
                 attempt: int = 1) -> tuple[DeliveryResult, bool]:
        """One try, no sleeping: (result, whether a later try may succeed). The webhook dispatcher's
        queue does the waiting between tries (runtime.functions.webhook_dispatch)."""
        if event not in EVENTS:
            raise ValueError(f"unknown webhook event {event!r}; use one of {', '.join(EVENTS)}")
        body = json.dumps({"event": event, "job": dict(job)}, separators=(",", ":"), default=str).encode()
        result, retry, _ = self._try_once(url, event, body, webhook_id, attempt)
        level = logging.INFO if result.delivered else logging.WARNING
        log.log(level, "webhook %s to %s: delivered=%s status=%s error=%s retry=%s", webhook_id, _redact(url),
                result.delivered, result.status_code, result.error, retry)
        return result, retry

    def _try_once(self, url: str, event: str, body: bytes, wid: str, attempt: int
                  ) -> tuple[DeliveryResult, bool, float | None]:
        try:
            checked = resolve_and_check(url, allow_loopback=self.allow_loopback, resolver=self._resolver)
        except UnsafeURLError as exc:
            return DeliveryResult(False, attempt, error=f"refused: {exc}"), False, None
        target, host_headers, extensions = pinned_request(checked)
        timestamp = int(self._clock())
        headers = {"Content-Type": "application/json", "Webhook-Id": wid, "Webhook-Event": event,
                   "Webhook-Timestamp": str(timestamp), SIGNATURE_HEADER: sign(self._secret, timestamp, body),
                   **host_headers}
        try:
            resp = self._client.post(target, content=body, headers=headers, extensions=extensions)
        except httpx.HTTPError as exc:
            return DeliveryResult(False, attempt, error=f"{type(exc).__name__}: {exc}"), True, None
        if 200 <= resp.status_code < 300:
            return DeliveryResult(True, attempt, resp.status_code), False, None
        retry = resp.status_code in RETRY_STATUSES
        return (DeliveryResult(False, attempt, resp.status_code, error=f"HTTP {resp.status_code}"), retry,
                _retry_after(resp.headers.get("Retry-After")))


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _redact(url: str) -> str:
    """Log the URL without its query string (it often carries a token)."""
    return url.split("?", 1)[0]
