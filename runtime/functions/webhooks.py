"""Signed webhooks, sent by the webhook dispatcher (runtime.functions.webhook_dispatch) as a job starts, outputs, ends.

Wire format (documented for receivers in docs/api.md)::

    POST <webhook URL>
    Content-Type: application/json
    Webhook-Id: <job_id>.<event>          stable across retries: receivers deduplicate on it
    Webhook-Event: start | output | completed | progress
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

Each try is capped as a whole, not per read (httpx's timeouts apply to each read, so a receiver that
trickles its answer could hold a sender for minutes): ``timeout_s`` bounds the try from connect to the
last byte read, enforced by a watchdog that shuts the try's socket down (httpcore's ``trace`` extension
hands it over) and by a deadline checked between body chunks. The reply body is streamed and at most
``max_reply_bytes`` of it is read (only its status matters); a reply over the cap or over the time is
``misbehaved`` in the result, which the dispatcher's breaker counts like a timeout. Connections are
not kept alive (each try gets its own socket, so the watchdog can always reach it).

Errors never escape ``send``: it returns a ``DeliveryResult``; webhook trouble must not fail a job.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from runtime.jobs.output_links import OutputLinks
from runtime.jobs.views import public_view
from runtime.net_safety import Resolver, UnsafeURLError, pinned_request, resolve_and_check

log = logging.getLogger(__name__)

EVENTS = ("start", "output", "completed", "progress")  # progress: opt-in (runtime.functions.webhook_events)
SIGNATURE_HEADER = "Webhook-Signature"
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
USER_AGENT = "genai-fleet-webhooks/1"
MAX_REPLY_BYTES = 64 * 1024  # of a receiver's answer read at most; the status is all a sender needs


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
    misbehaved: str | None = None  # the reply ran over the time or size cap (counted by the breaker)

    @property
    def trips_breaker(self) -> bool:
        """No answer at all, or one that was too slow or too big: the endpoint should wait a while."""
        return self.status_code is None or self.misbehaved is not None


class WebhookSender:
    """Sends signed webhook events with retries; safe to share between threads."""

    def __init__(self, secret: bytes | str, allow_loopback: bool = False, max_attempts: int = 5,
                 base_delay_s: float = 0.5, max_delay_s: float = 30.0, timeout_s: float = 5.0,
                 resolver: Resolver | None = None, transport: httpx.BaseTransport | None = None,
                 sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                 clock: Callable[[], float] = time.time, max_reply_bytes: int = MAX_REPLY_BYTES,
                 monotonic: Callable[[], float] = time.monotonic):
        """``timeout_s`` caps one whole try (connect, send, answer); ``max_reply_bytes`` the answer read."""
        if not secret:
            raise ValueError("a webhook signing secret is required")
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.allow_loopback = allow_loopback
        self.max_attempts = max(1, max_attempts)
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self._resolver, self._sleep, self._rng, self._clock = resolver, sleep, rng, clock
        self.timeout_s, self.max_reply_bytes, self._monotonic = timeout_s, max_reply_bytes, monotonic
        self._client = httpx.Client(timeout=timeout_s, follow_redirects=False, transport=transport,
                                    limits=httpx.Limits(max_keepalive_connections=0),
                                    headers={"User-Agent": USER_AGENT})

    def close(self) -> None:
        self._client.close()

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Delay before try ``attempt + 1``: exponential, capped, with 'equal jitter' (half fixed)."""
        if retry_after is not None:
            return min(self.max_delay_s, max(0.0, retry_after))
        ceiling = min(self.max_delay_s, self.base_delay_s * (2 ** (attempt - 1)))
        return ceiling / 2 + self._rng() * ceiling / 2

    def notify(self, record: Mapping[str, Any], event: str, links: OutputLinks,
               base_url: str = "") -> DeliveryResult | None:
        """Send ``event`` for a job record when its spec asks for it (output links made now by ``links``);
        None when nothing was to send."""
        spec = record.get("spec") or {}
        url = spec.get("webhook")
        if not url or event not in (spec.get("webhook_events_filter") or ()):
            return None
        return self.send(url, event, public_view(record, base_url, links), webhook_id=f"{record['job_id']}.{event}")

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
        watchdog = _Watchdog(self.timeout_s)
        try:
            status, retry_after, misbehaved = self._exchange(target, body, headers,
                                                             {**extensions, "trace": watchdog.trace}, watchdog)
        except httpx.HTTPError as exc:
            cause = f"no answer within {self.timeout_s:g}s" if watchdog.fired else f"{type(exc).__name__}: {exc}"
            return DeliveryResult(False, attempt, error=cause), True, None
        finally:
            watchdog.cancel()
        if 200 <= status < 300:
            return DeliveryResult(True, attempt, status, misbehaved=misbehaved), False, None
        retry = status in RETRY_STATUSES
        return (DeliveryResult(False, attempt, status, error=f"HTTP {status}", misbehaved=misbehaved), retry,
                retry_after)

    def _exchange(self, target: str, body: bytes, headers: dict[str, str], extensions: dict[str, Any],
                  watchdog: _Watchdog) -> tuple[int, float | None, str | None]:
        """(status, Retry-After, why the reply misbehaved): the answer streamed, read up to the size cap and
        the deadline only, the connection then closed."""
        deadline = self._monotonic() + self.timeout_s
        watchdog.start()
        with self._client.stream("POST", target, content=body, headers=headers, extensions=extensions) as resp:
            status, retry_after = resp.status_code, _retry_after(resp.headers.get("Retry-After"))
            read = 0
            # raw bytes: a compressed body is not inflated (a small gzip reply can expand a thousandfold)
            chunks = [resp.content] if resp.is_stream_consumed else resp.iter_raw()  # in-memory replies (tests)
            for chunk in chunks:
                read += len(chunk)
                if read > self.max_reply_bytes:
                    return status, retry_after, f"reply body over {self.max_reply_bytes} bytes"
                if self._monotonic() > deadline:
                    return status, retry_after, f"reply took over {self.timeout_s:g}s"
            return status, retry_after, None


class _Watchdog:
    """Shuts a try's sockets down when its time is up, which ends any read blocked on them."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        """httpcore's ``trace`` extension: keep the socket of each connection the try opens."""
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            stream = info.get("return_value")
            sock = stream.get_extra_info("socket") if stream is not None else None
            if sock is not None:
                with self._lock:
                    self._sockets.append(sock)
                    if self.fired:
                        _shut(sock)

    def start(self) -> None:
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()

    def _fire(self) -> None:
        with self._lock:
            self.fired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:  # already closed, or a plain socket that TLS wrapped (its TLS socket is in the list)
        log.debug("webhook socket already closed")


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _redact(url: str) -> str:
    """Log the URL without its query string (it often carries a token)."""
    return url.split("?", 1)[0]
