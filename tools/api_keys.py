"""``genai-stack api-key create | list | revoke | rotate``: the lifecycle of a stack's API keys (issue 43, item 3).

Key records are SSM SecureString parameters under ``/genai-fleet/<env>/api-keys/<key id>`` (runtime.api.auth);
last-used days are items of the job table (runtime.jobs.key_use). Nothing here prints or returns a key's hash;
a key itself is printed once, by ``create`` and ``rotate``.

- ``list``: every key with its name, id, tenant, scope, created, last used (UTC day), revoked, and every optional
  field of the record (``runtime.api.auth.OPTIONAL_FIELDS``).
- ``revoke``: sets ``disabled`` and ``revoked`` on the record (kept, so ``list`` still shows it). Every API and
  authorizer instance caches lookups for ``REVOCATION_BOUND_SECONDS`` (``SsmKeyStore.cache_seconds``) and API
  Gateway caches no authorizer answer, so the key is refused everywhere within that bound. An unknown key id is
  ``UnknownKeyError`` (exit code 2).
- ``rotate``: a second key for the same tenant with the same scope and optional fields (so the same jobs, quota
  counters and spend), leaving the old key working until it is revoked.
"""

from __future__ import annotations

import re
import time
from dataclasses import replace
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.api.auth import OPTIONAL_FIELDS, SCOPES, TENANT_SCOPE, KeyRecord, SsmKeyStore, generate_key
from runtime.api.key_format import TAG_SECRET_NAME
from runtime.jobs.key_use import KeyUse

#: How long a revoked key may still be accepted: the key stores' lookup cache (API and authorizer instances).
REVOCATION_BOUND_SECONDS = 60
_KEY_ID = re.compile(r"^[a-z0-9]{12}$")


class KeyLifecycleError(RuntimeError):
    """A key command cannot be done; the message says what to change (exit code 1)."""


class UnknownKeyError(KeyLifecycleError):
    """No key has this id (exit code 2)."""


def _now_iso(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def create(store: SsmKeyStore, name: str, quota_per_day: int | None = None, scope: str = TENANT_SCOPE,
           now: float | None = None, **optional: Any) -> dict[str, Any]:
    """Mint a key for a new tenant (tenant = its key id); the key is in the answer, once. ``optional``: the
    record's optional fields (``OPTIONAL_FIELDS``, e.g. ``max_priority``)."""
    if not (name or "").strip():
        raise KeyLifecycleError("an API key needs a name saying who holds it: pass --name (make api-key NAME=alice)")
    if scope not in SCOPES:
        raise KeyLifecycleError(f"--scope must be one of {', '.join(SCOPES)}, not {scope!r}")
    key, record = generate_key(name.strip(), quota_per_day=quota_per_day, scope=scope,
                               created=_now_iso(time.time() if now is None else now), **optional)
    return {"parameter": store.put(record), "key_id": record.key_id, "tenant": record.tenant, "scope": scope,
            "key": key}


def _records(ssm: Any, prefix: str) -> list[KeyRecord]:
    records, kwargs = [], {"Path": prefix.rstrip("/"), "Recursive": False, "WithDecryption": True}
    while True:
        page = ssm.get_parameters_by_path(**kwargs)
        for param in page.get("Parameters", []):
            key_id = param["Name"].rsplit("/", 1)[1]
            if key_id == TAG_SECRET_NAME:
                continue
            try:
                records.append(KeyRecord.from_json(key_id, param["Value"]))
            except (ValueError, KeyError, TypeError):
                records.append(KeyRecord(key_id=key_id, sha256="", name="<unreadable record>", disabled=True))
        if not page.get("NextToken"):
            return records
        kwargs["NextToken"] = page["NextToken"]


def describe(record: KeyRecord, last_used: str | None) -> dict[str, Any]:
    """What ``list`` shows of a key: never its hash."""
    return {"key_id": record.key_id, "name": record.name, "tenant": record.tenant, "scope": record.scope,
            "created": record.created, "last_used": last_used, "disabled": record.disabled,
            "revoked": record.revoked, **record.optional_fields()}


def list_keys(ssm: Any, prefix: str, key_use: KeyUse | None) -> dict[str, Any]:
    records = sorted(_records(ssm, prefix), key=lambda r: (r.tenant, r.created or "", r.key_id))
    answer: dict[str, Any] = {}
    try:
        used = key_use.last_used([r.key_id for r in records]) if key_use is not None else {}
    except (ClientError, BotoCoreError) as exc:  # no job table yet (stack not up): the keys are still listed
        used, answer["last_used_unavailable"] = {}, f"the job table could not be read: {exc}"
    return {"keys": [describe(r, used.get(r.key_id)) for r in records],
            "optional_fields": list(OPTIONAL_FIELDS), **answer}


def _existing(store: SsmKeyStore, key_id: str) -> KeyRecord:
    if not _KEY_ID.match(key_id or ""):
        raise UnknownKeyError(f"{key_id!r} is not a key id (12 lowercase letters and digits, the part after "
                              "'gf_' in the key; `genai-stack api-key list` shows them)")
    record = store.lookup(key_id)
    if record is None:
        raise UnknownKeyError(f"no API key has id {key_id!r} in {store.prefix}: `genai-stack api-key list` "
                              "shows the stack's keys")
    return record


def revoke(store: SsmKeyStore, key_id: str, now: float | None = None) -> dict[str, Any]:
    record = _existing(store, key_id)
    when = record.revoked or _now_iso(time.time() if now is None else now)
    store.put(replace(record, disabled=True, revoked=when))
    return {"key_id": key_id, "tenant": record.tenant, "revoked": when,
            "refused_everywhere_within_seconds": REVOCATION_BOUND_SECONDS}


def rotate(store: SsmKeyStore, key_id: str, name: str | None = None, now: float | None = None) -> dict[str, Any]:
    """A second key for ``key_id``'s tenant, with its scope and optional fields; the old key keeps working."""
    old = _existing(store, key_id)
    if old.disabled:
        raise KeyLifecycleError(f"key {key_id} is revoked: create a new key (`genai-stack api-key --name ...`) "
                                "instead of rotating it")
    key, record = generate_key((name or old.name).strip(), tenant=old.tenant, scope=old.scope,
                               created=_now_iso(time.time() if now is None else now),
                               **{k: v for k, v in old.optional_fields().items()})
    return {"parameter": store.put(record), "key_id": record.key_id, "tenant": record.tenant, "scope": record.scope,
            "replaces": key_id, "key": key,
            "next": f"switch the client to the new key, then `genai-stack api-key revoke --key-id {key_id}`"}
