"""The query of ``GET /v1/jobs``: ``limit``, ``status`` and the opaque ``cursor`` (read and written here).

``limit`` is 1..100 (default 20); ``status`` is one status or several separated by commas
(``queued,running``); ``metadata.<key>=<value>`` (issue 44, any number up to the label limit) keeps the jobs whose
label ``<key>`` has that value; ``cursor`` is the ``next_cursor`` of the previous page. The cursor is the
position (creation time and job id) of the previous page's last job, base64url-encoded JSON. It names no
owner: the owner is always the caller, so a cursor copied from another key reads the caller's own jobs
from that position and nothing else. Anything else in it is refused with 422 naming ``cursor``.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from runtime.api.problems import ApiError
from runtime.jobs.ids import is_job_id
from runtime.jobs.models import MAX_METADATA_KEY, MAX_METADATA_KEYS, MAX_METADATA_VALUE, METADATA_KEY
from runtime.jobs.store import STATUSES

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_CURSOR_CHARS = 200  # a cursor this API writes is about 80
LATEST_CREATED_AT = 1e11  # epoch seconds (year 5138): a cursor time beyond it is not one this API wrote
KNOWN_PARAMETERS = ("limit", "status", "cursor")
METADATA_PREFIX = "metadata."  # issue 44: metadata.<key>=<value>, one per label, all must match




@dataclass(frozen=True)
class ListQuery:
    limit: int = DEFAULT_LIMIT
    statuses: tuple[str, ...] = ()
    after: tuple[float, str] | None = None
    metadata: tuple[tuple[str, str], ...] = ()  # issue 44: (key, value) labels every listed job carries


def encode_cursor(after: tuple[float, str]) -> str:
    raw = json.dumps({"c": after[0], "j": after[1]}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    if len(cursor) > MAX_CURSOR_CHARS:
        raise _bad("cursor", "cursor", "is not a cursor this API gave; pass the next_cursor of a page")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        created, job_id = data["c"], data["j"]
    except (binascii.Error, ValueError, TypeError, KeyError, UnicodeDecodeError):
        raise _bad("cursor", "cursor", "is not a cursor this API gave; pass the next_cursor of a page, "
                                       "or leave it out to start from the newest job") from None
    if (not isinstance(created, int | float) or isinstance(created, bool) or not math.isfinite(created)
            or not 0 <= created <= LATEST_CREATED_AT
            or not isinstance(job_id, str) or not is_job_id(job_id)):
        raise _bad("cursor", "cursor", "is not a cursor this API gave; pass the next_cursor of a page")
    return float(created), job_id


def parse_list_query(query: Mapping[str, str]) -> ListQuery:
    """The query string of ``GET /v1/jobs``, or 422 naming the parameter and what it takes."""
    unknown = sorted(set(query) - set(KNOWN_PARAMETERS) - {k for k in query if k.startswith(METADATA_PREFIX)})
    if unknown:
        raise _bad(unknown[0], "unknown-parameter", f"is not a parameter of GET /v1/jobs; use "
                                                    f"{', '.join(KNOWN_PARAMETERS)} or metadata.<key>")
    limit = DEFAULT_LIMIT
    if "limit" in query:
        text = query["limit"].strip()
        if not re.fullmatch(r"[0-9]{1,3}", text) or not 1 <= int(text) <= MAX_LIMIT:
            raise _bad("limit", "range", f"must be a whole number from 1 to {MAX_LIMIT} (got {text[:20]!r})")
        limit = int(text)
    statuses: tuple[str, ...] = ()
    if query.get("status"):
        statuses = tuple(dict.fromkeys(s.strip() for s in query["status"].split(",")))
        wrong = [s for s in statuses if s not in STATUSES]
        if wrong:
            raise _bad("status", "enum", f"{wrong[0][:20]!r} is not a status; use one or more of "
                                         f"{', '.join(STATUSES)}, separated by commas")
    after = _decode_cursor(query["cursor"]) if query.get("cursor") else None
    return ListQuery(limit=limit, statuses=statuses, after=after, metadata=_metadata(query))


def _metadata(query: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Issue 44: the ``metadata.<key>=<value>`` filters, checked with the labels' own bounds."""
    labels = []
    for name in sorted(k for k in query if k.startswith(METADATA_PREFIX)):
        key, value = name[len(METADATA_PREFIX):], query[name]
        if not re.fullmatch(METADATA_KEY, key):
            raise _bad(name[:80], "pattern", f"names a label key of 1-{MAX_METADATA_KEY} letters, digits or _ . : - "
                                             f"after 'metadata.' (got {key[:80]!r})")
        if len(value) > MAX_METADATA_VALUE or "\x00" in value:
            raise _bad(name, "max-length", f"a label value is at most {MAX_METADATA_VALUE} characters, without NUL")
        labels.append((key, value))
    if len(labels) > MAX_METADATA_KEYS:
        raise _bad("metadata", "max-items", f"at most {MAX_METADATA_KEYS} metadata.<key> filters")
    return tuple(labels)


def _bad(name: str, rule: str, message: str) -> ApiError:
    return ApiError(422, "validation-failed", "Unprocessable Content", f"query parameter {name}: {message}",
                    errors=[{"field": f"query.{name}", "rule": rule, "message": message}])
