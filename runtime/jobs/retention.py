"""What a job record keeps of a job, and for how long (issue 44, lane F).

``store_inputs: false``
    The record is written without the inputs that say what the user asked or showed: ``PERSONAL_INPUTS`` (the
    prompt, the negative prompt, input images, a workflow and its images). The worker never reads the record's
    spec (it reads the queue message, which carries the whole spec and is deleted once the job is settled), so
    nothing is lost; the job view and webhooks show the other inputs (size, steps, seed...) and
    ``store_inputs: false``. Stronger than "removed when the job ends": the prompt is never written to the table.

``retention_seconds``
    The record expires ``retention_seconds`` after it was created instead of ``JOB_TTL_SECONDS`` (30 days):
    its ``expires_at`` is the table's TTL attribute. From that moment the API answers 404 for it (``expired``),
    whether or not DynamoDB has removed it yet (its TTL deletes within days, not on the second). When DynamoDB
    removes it, the output sweeper (runtime/functions/output_orphans.py) hears the REMOVE on the table's stream
    and deletes every object under ``outputs/<job_id>/``. A job without ``retention_seconds`` keeps the stack's
    retention: 30 days for the record, ``outputRetentionDays`` for the outputs (the bucket's lifecycle).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PERSONAL_INPUTS = ("prompt", "negative_prompt", "image", "mask", "workflow", "images")
JOB_TTL_SECONDS = 30 * 86400  # the record's lifetime without retention_seconds (the table's TTL attribute)


def stored_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec as the record keeps it: without ``PERSONAL_INPUTS`` when the job asked ``store_inputs: false``."""
    if spec.get("store_inputs") is not False:
        return dict(spec)
    inputs = {k: v for k, v in (spec.get("inputs") or {}).items() if k not in PERSONAL_INPUTS}
    return {**spec, "inputs": inputs}


def record_ttl_seconds(spec: Mapping[str, Any], default: int = JOB_TTL_SECONDS) -> int:
    """How long the record lives: the job's ``retention_seconds`` when shorter than ``default``."""
    asked = spec.get("retention_seconds")
    return min(int(asked), default) if asked is not None else default


def expired(record: Mapping[str, Any], now: float) -> bool:
    """Whether the record's retention ran out (DynamoDB's TTL may not have removed it yet)."""
    expires = record.get("expires_at")
    return expires is not None and float(expires) <= now
