"""Request headers the create route reads: Content-Type, Idempotency-Key and Prefer, each parsed by one rule.

``IDEMPOTENCY_KEY_PATTERN`` is published as the header's pattern in the OpenAPI document, so every value the
document allows is accepted here (a quoted ``"abc"``, the IETF draft's sf-string form, is the key ``abc``).
``Prefer: wait=N`` follows RFC 7240 (a decimal fraction is taken too); odd or unknown preferences are
ignored, never an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from runtime.api.problems import ApiError

IDEMPOTENCY_KEY_PATTERN = r"^[\x21-\x7e]{1,255}$"
_IDEMPOTENCY_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN)
_PREFER_WAIT = re.compile(r"(?:^|[,;\s])wait\s*=\s*(\"?)(\d{1,6}(?:\.\d{1,6})?)\1(?=$|[,;\s])", re.IGNORECASE)


def check_content_type(headers: Mapping[str, str]) -> None:
    ctype = headers.get("content-type")
    if ctype is None:
        return
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime != "application/json" and not (mime.startswith("application/") and mime.endswith("+json")):
        raise ApiError(415, "unsupported-media-type", "Unsupported Media Type",
                       "send the job as Content-Type: application/json")


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    raw = headers.get("idempotency-key")
    if raw is None:
        return None
    key = raw.strip()
    if len(key) >= 3 and key[0] == key[-1] == '"':  # the draft's sf-string form: "abc" is the key abc
        key = key[1:-1]
    if not _IDEMPOTENCY_KEY.match(key):  # the pattern the OpenAPI document publishes
        raise ApiError(400, "bad-idempotency-key", "Bad Request", "Idempotency-Key must be 1-255 visible ASCII chars",
                       errors=[{"field": "Idempotency-Key", "rule": "pattern",
                                "message": "must be 1-255 visible ASCII characters"}])
    return key


def prefer_wait(headers: Mapping[str, str], cap: float) -> float:
    """Seconds from ``Prefer: wait=N`` (RFC 7240), capped; unknown or odd preferences are ignored."""
    prefer = headers.get("prefer") or ""
    m = _PREFER_WAIT.search(prefer)
    if not m or "respond-async" in prefer.lower():
        return 0.0
    return max(0.0, min(float(m.group(2)), cap))
