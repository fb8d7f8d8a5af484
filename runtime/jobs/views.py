"""The public JSON view of a job record: what ``GET /v1/jobs/{id}`` returns and what webhooks carry.

Internal fields (owner, worker id, attempt error details, TTL) stay out of it. Timestamps are
RFC 3339 UTC strings (``2026-01-01T12:00:00.123Z``), like the job APIs users know.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from runtime.jobs.cost import ATTEMPT_COSTS, job_cost
from runtime.jobs.deadlines import CANCEL_REASON, DEADLINE_AT
from runtime.jobs.output_links import OutputLinks, output_key
from runtime.jobs.priorities import DEFAULT_PRIORITY


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return dt.datetime.fromtimestamp(float(ts), tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public_view(record: Mapping[str, Any], base_url: str, links: OutputLinks | None) -> dict[str, Any]:
    """The job as clients see it. ``base_url`` (e.g. ``https://api.example.com``) prefixes the API links;
    ``links`` makes each output's URL now (runtime.jobs.output_links). ``links`` None leaves each output's
    object ``key`` in place of its URL, for a payload whose links are made later (a webhook, by its sender)."""
    job_id = record["job_id"]
    spec = record.get("spec") or {}
    view: dict[str, Any] = {
        "id": job_id,
        "status": record["status"],
        "model": record.get("model"),
        "task": record.get("task"),
        "inputs": spec.get("inputs", {}),
        "created_at": iso(record.get("created_at")),
        "started_at": iso(record.get("started_at")),
        "completed_at": iso(record.get("completed_at")),
        "attempts": int(record.get("attempts") or 0),
        "cancel_requested": bool(record.get("cancel_requested")),
        "outputs": [_output(o, links) for o in record.get("outputs") or []],
        "timings": dict(record.get("timings") or {}),
        # GPU-seconds and dollars of every attempt settled so far, failed and handed-back ones included
        "cost": job_cost(record.get(ATTEMPT_COSTS)),
        "error": record.get("error"),
        "webhook": spec.get("webhook"),
        "webhook_events_filter": spec.get("webhook_events_filter", []),
        "metadata": dict(spec.get("metadata") or {}),  # issue 44: the job's labels, as sent
        "urls": {"get": f"{base_url}/v1/jobs/{job_id}", "cancel": f"{base_url}/v1/jobs/{job_id}/cancel"},
    }
    # issue 44 (lane D): when the job had to start by, and why a canceled job was canceled (client | deadline)
    view["deadline_at"] = iso(record.get(DEADLINE_AT))
    view["cancel_reason"] = record.get(CANCEL_REASON) or ("client" if record["status"] == "canceled" else None)
    view["priority"] = spec.get("priority") or DEFAULT_PRIORITY
    if spec.get("store_inputs") is False:  # issue 44: the prompt and input images were never stored
        view["store_inputs"] = False
    if spec.get("retention_seconds") is not None:
        view["retention_seconds"] = int(spec["retention_seconds"])
    if record.get("deleted_at") is not None:  # issue 44: a tombstone (runtime/jobs/deletion.py)
        view["deleted_at"] = iso(record["deleted_at"])
    return view


def _output(output: Mapping[str, Any], links: OutputLinks | None) -> dict[str, Any]:
    # ``generator`` names what made the file (the backend; ``test-pattern`` outputs are not model outputs).
    link = {"url": links.link(output)} if links is not None else {"key": output_key(output)}
    # ``seed`` (issue 44): the seed that made the output, where one is known (not a workflow's own seeds, nor on a
    # job settled before); DynamoDB hands numbers back as Decimal
    seed = {"seed": int(output["seed"])} if output.get("seed") is not None else {}
    return {**link, "content_type": output.get("content_type"), "generator": output.get("generator"), **seed}
