"""Verify a webhook the stack sent (docs/api.md "Verifying a webhook"): standard library only.

``Webhook-Signature: t=<unix time>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>``; check the raw bytes
before parsing them, refuse a timestamp more than ``tolerance_s`` off (replays), deduplicate on
``Webhook-Id``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

DEFAULT_TOLERANCE_S = 300


def verify_webhook(secret: bytes | str, signature_header: str, raw_body: bytes,
                   tolerance_s: float = DEFAULT_TOLERANCE_S, now: float | None = None) -> bool:
    """True when ``signature_header`` signs ``raw_body`` with ``secret`` and its time is within tolerance."""
    key = secret.encode() if isinstance(secret, str) else secret
    parts = [item.strip().split("=", 1) for item in (signature_header or "").split(",") if "=" in item]
    stamps = [value for name, value in parts if name == "t"]
    if len(stamps) != 1 or not stamps[0].isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamps[0])) > tolerance_s:
        return False
    expected = hmac.new(key, stamps[0].encode() + b"." + raw_body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, value) for name, value in parts if name == "v1")
