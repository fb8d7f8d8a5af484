"""API keys and per-key limits.

Keys look like ``gf_<key_id>_<secret>``: ``key_id`` is 12 lowercase letters/digits (public, used to find
the key record), ``secret`` 43 URL-safe characters (256 random bits). Clients send
``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

Storage: one SSM SecureString parameter per key, ``/genai-fleet/<env>/api-keys/<key_id>``, whose value
is JSON ``{"sha256": "<hex of sha256(key)>", "name": "...", "disabled": false, "quota_per_day": null,
"rate_per_second": null}``. Only the hash is stored: a 256-bit random secret needs no slow KDF (a fast
hash of a high-entropy token cannot be brute-forced), and verification stays sub-millisecond. Lookups go
straight to one parameter by key id (no scan) and are cached per Lambda instance for 60 s, so revoking
a key (delete the parameter or set ``disabled``) takes effect within a minute. Local mode reads the
same records from a JSON file (``{"<key_id>": {...}}``) or from ``GENAI_API_KEYS`` (``key,key``).

Answers: no credentials -> 401; unknown, wrong or disabled key -> 403.

Limits: ``TokenBucket`` per key per Lambda instance (``rate_per_second`` / burst; approximate, since
instances do not share it; the stage throttle is the hard global limit), and a daily job quota counted
atomically in the job table (``JobStore.consume_daily_quota``), exact across instances.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.problems import ApiError

_KEY = re.compile(r"^gf_([a-z0-9]{12})_([A-Za-z0-9_-]{43})$")
_ID_ALPHABET = string.ascii_lowercase + string.digits


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    sha256: str
    name: str = ""
    disabled: bool = False
    quota_per_day: int | None = None
    rate_per_second: float | None = None

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "name": self.name, "disabled": self.disabled,
                           "quota_per_day": self.quota_per_day, "rate_per_second": self.rate_per_second})

    @classmethod
    def from_json(cls, key_id: str, text: str | Mapping[str, Any]) -> KeyRecord:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(key_id=key_id, sha256=str(data["sha256"]), name=str(data.get("name") or ""),
                   disabled=bool(data.get("disabled", False)), quota_per_day=data.get("quota_per_day"),
                   rate_per_second=data.get("rate_per_second"))


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``id`` scopes jobs and idempotency keys (API key id, or IAM user ARN)."""

    id: str
    kind: str  # api-key | iam | anonymous
    quota_per_day: int | None = None
    rate_per_second: float | None = None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(name: str = "", quota_per_day: int | None = None) -> tuple[str, KeyRecord]:
    """A new key and the record to store (the key itself is shown once and never stored)."""
    key_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))
    key = f"gf_{key_id}_{secrets.token_urlsafe(32)}"
    return key, KeyRecord(key_id=key_id, sha256=hash_key(key), name=name, quota_per_day=quota_per_day)


def parse_key(key: str) -> str | None:
    """The key id of a well-formed key, else None."""
    m = _KEY.match(key)
    return m.group(1) if m else None


class KeyStore(Protocol):
    def lookup(self, key_id: str) -> KeyRecord | None: ...


class StaticKeyStore:
    """Key records held in memory (local mode, tests)."""

    def __init__(self, records: Mapping[str, KeyRecord] | None = None):
        self.records = dict(records or {})

    @classmethod
    def from_keys(cls, keys: list[str]) -> StaticKeyStore:
        records = {}
        for key in keys:
            key_id = parse_key(key)
            if key_id is None:
                raise ValueError("local API keys must look like gf_<12 chars>_<43 chars>; use generate_key()")
            records[key_id] = KeyRecord(key_id=key_id, sha256=hash_key(key), name="local")
        return cls(records)

    @classmethod
    def from_file(cls, path: str | Path) -> StaticKeyStore:
        data = json.loads(Path(path).read_text())
        return cls({kid: KeyRecord.from_json(kid, rec) for kid, rec in data.items()})

    def add(self, record: KeyRecord) -> None:
        self.records[record.key_id] = record

    def lookup(self, key_id: str) -> KeyRecord | None:
        return self.records.get(key_id)


class SsmKeyStore:
    """Key records in SSM SecureString parameters under ``prefix`` (``/genai-fleet/<env>/api-keys``)."""

    def __init__(self, ssm_client: Any, prefix: str, cache_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic):
        self.ssm, self.prefix = ssm_client, prefix.rstrip("/")
        self.cache_seconds, self._clock = cache_seconds, clock
        self._cache: dict[str, tuple[float, KeyRecord | None]] = {}
        self._lock = threading.Lock()

    def parameter_name(self, key_id: str) -> str:
        return f"{self.prefix}/{key_id}"

    def lookup(self, key_id: str) -> KeyRecord | None:
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit and now - hit[0] < self.cache_seconds:
                return hit[1]
        try:
            value = self.ssm.get_parameter(Name=self.parameter_name(key_id), WithDecryption=True)["Parameter"]["Value"]
            record: KeyRecord | None = KeyRecord.from_json(key_id, value)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ParameterNotFound":
                raise ApiError(503, "auth-unavailable", "Service Unavailable", "API keys cannot be read now",
                               headers={"Retry-After": "1"}) from exc
            record = None
        except BotoCoreError as exc:
            raise ApiError(503, "auth-unavailable", "Service Unavailable", "API keys cannot be read now",
                           headers={"Retry-After": "1"}) from exc
        except (ValueError, KeyError, TypeError):
            record = None  # a malformed record authorizes nobody
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key_id] = (now, record)
        return record

    def put(self, record: KeyRecord) -> str:
        name = self.parameter_name(record.key_id)
        self.ssm.put_parameter(Name=name, Value=record.to_json(), Type="SecureString", Overwrite=True)
        return name


def credentials_from_headers(headers: Mapping[str, str]) -> str | None:
    """The presented key (``Authorization: Bearer`` wins over ``x-api-key``), or None."""
    auth = (headers.get("authorization") or "").strip()
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() != "bearer":
            return auth  # a bare or foreign scheme: checked (and refused) as a key
        if value.strip():
            return value.strip()
        # "Bearer" with no token carries no credentials (401, as without the header) unless x-api-key does
    key = headers.get("x-api-key")
    return key.strip() if key and key.strip() else None


def authenticate(headers: Mapping[str, str], keys: KeyStore) -> Principal:
    """401 without credentials, 403 when they are not a valid, enabled key."""
    presented = credentials_from_headers(headers)
    if presented is None:
        raise ApiError(401, "unauthorized", "Unauthorized",
                       "send an API key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="genai-fleet"'})
    key_id = parse_key(presented)
    record = keys.lookup(key_id) if key_id else None
    if record is None or record.disabled or not hmac.compare_digest(record.sha256, hash_key(presented)):
        raise ApiError(403, "forbidden", "Forbidden", "the API key is not valid")
    return Principal(id=record.key_id, kind="api-key", quota_per_day=record.quota_per_day,
                     rate_per_second=record.rate_per_second)


class TokenBucket:
    """Per-key token buckets (rate per second, burst); in-process, so approximate across instances."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, rate: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        rate = rate or self.rate
        burst = max(self.burst, rate)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return True, 0.0
            self._buckets[key] = (tokens, now)
            return False, (1 - tokens) / rate
