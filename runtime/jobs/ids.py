"""Job ids: ``j_`` + 26 Crockford base32 characters (48-bit millisecond time + 80 random bits), ULID-like.

Ids sort by creation time (to the millisecond) and are unguessable (80 random bits), so an id alone
leaks nothing about other jobs. ``is_job_id`` is the one syntax check the API applies to path params.
"""

from __future__ import annotations

import re
import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U
PREFIX = "j_"
_JOB_ID = re.compile(r"^j_[0-9A-HJKMNP-TV-Z]{26}$")


def _encode(value: int, length: int) -> str:
    out = []
    for _ in range(length):
        value, rem = divmod(value, 32)
        out.append(_ALPHABET[rem])
    return "".join(reversed(out))


def new_job_id(now: float | None = None) -> str:
    """A new sortable job id; ``now`` (epoch seconds) is for tests."""
    millis = int((time.time() if now is None else now) * 1000) & ((1 << 48) - 1)
    return PREFIX + _encode(millis, 10) + _encode(secrets.randbits(80), 16)


def is_job_id(value: str) -> bool:
    return bool(_JOB_ID.match(value))


def job_id_time(job_id: str) -> float:
    """Creation time (epoch seconds) encoded in a job id."""
    millis = 0
    for ch in job_id[len(PREFIX):len(PREFIX) + 10]:
        millis = millis * 32 + _ALPHABET.index(ch)
    return millis / 1000.0
