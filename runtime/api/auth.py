"""API keys, their store, and per-key and per-source limits.

Keys look like ``gf_<key_id>_<secret>_<tag>`` (runtime.api.key_format): ``key_id`` is public and names the key
record, ``secret`` carries 256 random bits, and ``tag`` lets a made-up key be refused without any lookup.
Clients send ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.

Storage: one SSM SecureString parameter per key, ``/genai-fleet/<env>/api-keys/<key_id>``, whose value
is JSON ``{"sha256": "<hex of sha256(key)>", "name": "...", "disabled": false, "quota_per_day": null,
"rate_per_second": null, "tenant": "...", "scope": "tenant", "created": "...", "revoked": null}`` (issue 43: a
record without a tenant is its own tenant); the tag secret sits beside them in ``.../api-keys/tag-secret``. Only
the hash is stored: a 256-bit random secret needs no slow KDF, and verification stays sub-millisecond. Lookups go
straight to one parameter by key id (no scan) and are cached per Lambda instance in a bounded LRU, found and
not-found alike, for 60 s, so a key revoked with ``genai-stack api-key revoke`` (tools/api_keys.py) is refused
everywhere within 60 s and a repeated unknown key costs one GetParameter a minute. Local mode reads the same
records from a JSON file (``{"<key_id>": {...}}``) or from ``GENAI_API_KEYS`` (``key,key``).

Answers: no credentials -> 401; unknown, wrong, badly tagged or disabled key -> 403, the same status and body
for each; a source (client IP) with too many failed lookups -> 429 for keys made without the tag secret that
are not already cached, until its budget refills (``authenticate`` says which keys that spares).

Limits: ``TokenBucket`` per key per Lambda instance, each key with its own rate and burst (writes:
``rate_per_second`` of the key or the stack; reads: their own budget, runtime.api.app; approximate, since
instances do not share them; the stage throttle is the hard global limit), and a daily job quota counted
atomically in the job table (``JobStore.consume_daily_quota``), exact across instances.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api import key_format
from runtime.api.problems import ApiError
from runtime.jobs.priorities import DEFAULT_CEILING, ceiling_of

log = logging.getLogger(__name__)


#: A key's scope (issue 43): ``tenant`` keys reach their own tenant's jobs; ``operator`` keys may also call the
#: operator routes (``GET /v1/fleet``). Records without one are tenant keys.
SCOPES = ("tenant", "operator")
TENANT_SCOPE, OPERATOR_SCOPE = SCOPES

#: The optional settings of a key record: ``genai-stack api-key list`` shows each and ``api-key rotate`` copies
#: each to the new key. A new optional field is one name here (and one field below, read with a default).
OPTIONAL_FIELDS = ("quota_per_day", "rate_per_second", "max_priority")  # max_priority: issue 44


@dataclass(frozen=True)
class KeyRecord:
    """One key. ``tenant`` owns the key's jobs, idempotency keys, quota and spend (issue 43): keys minted before
    tenants existed have none stored and own what they always owned (tenant = key id); ``rotate`` gives the new
    key its old key's tenant. ``created`` is an ISO 8601 UTC time (None on records older than issue 43)."""

    key_id: str
    sha256: str
    name: str = ""
    disabled: bool = False
    quota_per_day: int | None = None
    rate_per_second: float | None = None
    tenant: str = ""  # "": the key id (set in __post_init__)
    scope: str = TENANT_SCOPE
    created: str | None = None
    max_priority: str | None = None  # issue 44 (lane D): the highest job priority; None: normal
    revoked: str | None = None  # when ``genai-stack api-key revoke`` set ``disabled`` (ISO 8601 UTC)

    def __post_init__(self) -> None:
        if not self.tenant:
            object.__setattr__(self, "tenant", self.key_id)
        if self.scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")

    def optional_fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in OPTIONAL_FIELDS}

    def to_json(self) -> str:
        return json.dumps({"sha256": self.sha256, "name": self.name, "disabled": self.disabled,
                           **self.optional_fields(), "tenant": self.tenant, "scope": self.scope,
                           "created": self.created, "revoked": self.revoked})

    @classmethod
    def from_json(cls, key_id: str, text: str | Mapping[str, Any]) -> KeyRecord:
        data = json.loads(text) if isinstance(text, str) else dict(text)
        return cls(key_id=key_id, sha256=str(data["sha256"]), name=str(data.get("name") or ""),
                   disabled=bool(data.get("disabled", False)),
                   **{name: data[name] for name in OPTIONAL_FIELDS if data.get(name) is not None},  # else: default
                   tenant=str(data.get("tenant") or key_id), scope=str(data.get("scope") or TENANT_SCOPE),
                   created=data.get("created"), revoked=data.get("revoked"))


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``id`` is the key id (or IAM user ARN) and keys the rate limits; ``tenant`` owns jobs,
    idempotency keys, quota and spend (issue 43; default: ``id``); ``scope`` says whether operator routes answer."""

    id: str
    kind: str  # api-key | iam | anonymous
    quota_per_day: int | None = None
    rate_per_second: float | None = None
    tenant: str = ""  # "": the same as id (set in __post_init__)
    scope: str = TENANT_SCOPE
    max_priority: str = DEFAULT_CEILING  # issue 44 (lane D): runtime.jobs.priorities

    def __post_init__(self) -> None:
        if not self.tenant:
            object.__setattr__(self, "tenant", self.id)


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def generate_key(name: str = "", quota_per_day: int | None = None,
                 tag_secret: bytes | None = None, **fields: Any) -> tuple[str, KeyRecord]:
    """A new key and the record to store (the key itself is shown once and never stored).

    ``tag_secret`` is the deployment's tag secret (``SsmKeyStore.mint`` passes it); without one the tag is
    the public checksum, which only a store with no tag secret accepts. ``fields``: the record's other fields
    (``tenant``, ``scope``, ``created``, the optional fields).
    """
    key, key_id = key_format.new_key(tag_secret)
    return key, KeyRecord(key_id=key_id, sha256=hash_key(key), name=name, quota_per_day=quota_per_day, **fields)


def parse_key(key: str) -> str | None:
    """The key id of a well-formed key (either format; the tag is not checked here), else None."""
    parsed = key_format.parse(key)
    return parsed.key_id if parsed else None


class KeyStore(Protocol):
    """Where key records live. ``accept_untagged`` admits first-format keys; ``tag_secret`` keys the tags."""

    accept_untagged: bool

    def lookup(self, key_id: str) -> KeyRecord | None: ...

    def tag_secret(self) -> bytes | None: ...


class StaticKeyStore:
    """Key records held in memory (local mode, tests)."""

    def __init__(self, records: Mapping[str, KeyRecord] | None = None, tag_secret: bytes | None = None,
                 accept_untagged: bool = True):
        self.records = dict(records or {})
        self._tag_secret = tag_secret
        self.accept_untagged = accept_untagged

    def tag_secret(self) -> bytes | None:
        return self._tag_secret

    @classmethod
    def from_keys(cls, keys: list[str]) -> StaticKeyStore:
        records = {}
        for key in keys:
            key_id = parse_key(key)
            if key_id is None:
                raise ValueError("local API keys must look like gf_<12 chars>_<43 chars>[_<8-char tag>]; "
                                 "use generate_key()")
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
    """Key records in SSM SecureString parameters under ``prefix`` (``/genai-fleet/<env>/api-keys``).

    Lookups (found or not) are cached in a bounded LRU for ``cache_seconds``; the tag secret
    (``<prefix>/tag-secret``, absent: public checksum tags) is re-read every ``tag_cache_seconds``.
    """

    def __init__(self, ssm_client: Any, prefix: str, cache_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic, max_entries: int = 4096,
                 accept_untagged: bool = False, tag_cache_seconds: float = 300.0):
        self.ssm, self.prefix = ssm_client, prefix.rstrip("/")
        self.cache_seconds, self._clock = cache_seconds, clock
        self.max_entries, self.accept_untagged = max_entries, accept_untagged
        self.tag_cache_seconds = tag_cache_seconds
        self._cache: OrderedDict[str, tuple[float, KeyRecord | None]] = OrderedDict()
        self._tag: tuple[float, bytes | None] | None = None
        self._lock = threading.Lock()

    def parameter_name(self, key_id: str) -> str:
        return f"{self.prefix}/{key_id}"

    def _get(self, name: str) -> str | None:
        """A parameter's value; None when it does not exist; 503 when SSM cannot answer (fail closed)."""
        try:
            return self.ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ParameterNotFound":
                return None
            raise ApiError(503, "auth-unavailable", "Service Unavailable", "API keys cannot be read now",
                           headers={"Retry-After": "1"}) from exc
        except BotoCoreError as exc:
            raise ApiError(503, "auth-unavailable", "Service Unavailable", "API keys cannot be read now",
                           headers={"Retry-After": "1"}) from exc

    def tag_secret(self) -> bytes | None:
        now = self._clock()
        with self._lock:
            if self._tag is not None and now - self._tag[0] < self.tag_cache_seconds:
                return self._tag[1]
        value = self._get(self.parameter_name(key_format.TAG_SECRET_NAME))
        secret = value.encode() if value else None
        with self._lock:
            self._tag = (now, secret)
        return secret

    def cached(self, key_id: str) -> tuple[bool, KeyRecord | None]:
        """(hit, record) from the cache alone: never calls SSM."""
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key_id)
            if hit is None or now - hit[0] >= self.cache_seconds:
                return False, None
            self._cache.move_to_end(key_id)
            return True, hit[1]

    def lookup(self, key_id: str) -> KeyRecord | None:
        hit, record = self.cached(key_id)
        if hit:
            return record
        value = self._get(self.parameter_name(key_id))
        try:
            record = KeyRecord.from_json(key_id, value) if value is not None else None
        except (ValueError, KeyError, TypeError):
            record = None  # a malformed record authorizes nobody
        with self._lock:
            self._cache[key_id] = (self._clock(), record)
            self._cache.move_to_end(key_id)
            while len(self._cache) > self.max_entries:  # evict the least recently used, never everything
                self._cache.popitem(last=False)
        return record

    def put(self, record: KeyRecord) -> str:
        name = self.parameter_name(record.key_id)
        self.ssm.put_parameter(Name=name, Value=record.to_json(), Type="SecureString", Overwrite=True)
        return name

    def mint(self, name: str = "", quota_per_day: int | None = None, **fields: Any) -> str:
        """Make, store and return a new key, creating the stack's tag secret on first use."""
        secret = self._get(self.parameter_name(key_format.TAG_SECRET_NAME))
        if secret is None:
            try:
                self.ssm.put_parameter(Name=self.parameter_name(key_format.TAG_SECRET_NAME), Type="SecureString",
                                       Value=key_format.new_tag_secret(), Overwrite=False)
            except ClientError as exc:  # another minter made it first: use theirs
                if exc.response.get("Error", {}).get("Code") != "ParameterAlreadyExists":
                    raise
            secret = self._get(self.parameter_name(key_format.TAG_SECRET_NAME))
        with self._lock:
            self._tag = None
        key, record = generate_key(name, quota_per_day, tag_secret=secret.encode() if secret else None, **fields)
        self.put(record)
        return key


class FailureLimiter:
    """Failed authentications per source (client IP): ``burst`` at once, refilled at ``per_second``.

    In-process and bounded (``max_sources``, least recently seen dropped). A source over its budget gets
    429 for anything that would need a key-store lookup, so a flood of made-up keys cannot throttle SSM
    for the account and lock real users out.
    """

    def __init__(self, burst: float = 20.0, per_second: float = 0.2, max_sources: int = 10_000,
                 clock: Callable[[], float] = time.monotonic):
        self.burst, self.per_second, self.max_sources, self._clock = burst, per_second, max_sources, clock
        self._sources: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _tokens(self, source: str, now: float) -> float:
        tokens, last = self._sources.get(source, (self.burst, now))
        return min(self.burst, tokens + (now - last) * self.per_second)

    def retry_after(self, source: str | None) -> float:
        """Seconds until ``source`` may fail again (0: it may try now)."""
        if not source:
            return 0.0
        with self._lock:
            tokens = self._tokens(source, self._clock())
        return 0.0 if tokens >= 1 else (1 - tokens) / self.per_second

    def record_failure(self, source: str | None) -> None:
        if not source:
            return
        now = self._clock()
        with self._lock:
            self._sources[source] = (max(0.0, self._tokens(source, now) - 1), now)
            self._sources.move_to_end(source)
            while len(self._sources) > self.max_sources:
                self._sources.popitem(last=False)


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


def _forbidden() -> ApiError:
    return ApiError(403, "forbidden", "Forbidden", "the API key is not valid")


def authenticate(headers: Mapping[str, str], keys: KeyStore, source: str | None = None,
                 failures: FailureLimiter | None = None) -> Principal:
    """401 without credentials, 403 when they are not a valid, enabled key, 429 when ``source`` failed too often.

    A key refused offline (no format, or a tag that does not verify) costs no lookup and is not counted.
    A key whose tag verifies under the deployment's tag secret was minted here (forging a tag takes about
    2**40 tries), so it is always looked up: a flood from its address never holds it up. Keys anyone can
    make without that secret (untagged keys where accepted, checksum tags where no tag secret is set) are
    what a flood that costs lookups is made of: while their source is over its budget they are checked
    against cached records only. Unknown key ids and wrong secrets get the same answer (status and body)
    either way, so the answer never tells whether a key id exists.
    """
    presented = credentials_from_headers(headers)
    if presented is None:
        raise ApiError(401, "unauthorized", "Unauthorized",
                       "send an API key as 'Authorization: Bearer <key>' or 'x-api-key: <key>'",
                       headers={"WWW-Authenticate": 'Bearer realm="genai-fleet"'})
    tag_secret = keys.tag_secret()
    parsed = key_format.parse(presented, tag_secret)
    if parsed is None or not (parsed.tag_ok or (not parsed.tagged and keys.accept_untagged)):
        raise _forbidden()
    minted_here = parsed.tag_ok and tag_secret is not None
    wait = failures.retry_after(source) if failures is not None and not minted_here else 0.0
    if wait > 0:
        record = _verified(_cached_record(keys, parsed.key_id), presented)
        if record is None:
            log.warning("refusing a key lookup for %s: too many failed authentications", source)
            raise ApiError(429, "too-many-failed-authentications", "Too Many Requests",
                           "too many failed authentications from this address; wait before trying again",
                           headers={"Retry-After": str(max(1, round(wait + 0.5)))})
    else:
        record = _verified(keys.lookup(parsed.key_id), presented)
        if record is None:
            if failures is not None:
                failures.record_failure(source)
            raise _forbidden()
    return Principal(id=record.key_id, kind="api-key", quota_per_day=record.quota_per_day,
                     rate_per_second=record.rate_per_second, tenant=record.tenant, scope=record.scope,
                     max_priority=ceiling_of(record.max_priority))


def _verified(record: KeyRecord | None, presented: str) -> KeyRecord | None:
    """``record`` when it exists, is enabled and hashes the presented key (compared in constant time), else None."""
    if record is None or record.disabled or not hmac.compare_digest(record.sha256, hash_key(presented)):
        return None
    return record


def _cached_record(keys: KeyStore, key_id: str) -> KeyRecord | None:
    """A record without calling the store: from its cache, or from memory for stores that hold every record."""
    cached = getattr(keys, "cached", None)
    if cached is None:
        return keys.lookup(key_id)  # in-memory stores (local mode, tests) cost nothing to ask
    _, record = cached(key_id)
    return record


class TokenBucket:
    """Token buckets, one per key, each with its own rate and burst (a key's limits never bind another).

    In-process, so approximate across instances, and bounded (``max_keys``, least recently used dropped: a
    dropped key starts again with a full bucket). ``rate`` / ``burst`` are the defaults for keys whose
    caller passes none.
    """

    def __init__(self, rate: float | None = None, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic, max_keys: int = 10_000):
        self.rate, self.burst, self._clock, self.max_keys = rate, burst, clock, max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, key: str, rate: float | None = None, burst: float | None = None) -> tuple[bool, float]:
        """(allowed, seconds until the next token) for ``key`` at ``rate``/s with ``burst`` (defaults: the
        bucket's own; a rate given without a burst allows one second's worth, at least one request)."""
        if rate is None:
            rate, burst = self.rate, burst if burst is not None else self.burst
        if not rate or rate <= 0:
            raise ValueError("TokenBucket.allow needs a positive rate (none given and no default)")
        burst = max(1.0, burst if burst is not None else rate)
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + max(0.0, now - last) * rate)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            self._buckets.move_to_end(key)
            while len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        return (True, 0.0) if allowed else (False, (1 - tokens) / rate)
