"""Outputs no final record points at are deleted when their job becomes final (issue 28, finding 6).

Each attempt uploads under ``<prefix>/<job_id>/<lease>/`` (runtime.worker.outputs). An attempt that is
fenced out or fails deletes what it wrote (Settlement._discard); one whose worker was killed after
uploading cannot, and its objects stayed live for ever while the record pointed at a later attempt.
When a job turns final nothing can add a referenced object any more (no attempt starts on a final
record, and a late attempt's final write is fenced and discards its own upload), so that moment is when
the job's folder is swept: every object under ``<prefix>/<job_id>/`` that the record does not point at
is deleted, compared by object key. For a success, anything under the final attempt's folder is kept
too (belt and braces: never delete what the record might name); a failed or canceled job keeps nothing.

``OrphanSweeper.handle(event)`` takes the job table's stream records (the same images the webhook
dispatcher reads); ``stream_handler`` is its Lambda entry (components/job_events.py: ListBucket only
under the outputs prefix, DeleteObject only on it). Environment: GENAI_OUTPUTS_BUCKET,
GENAI_OUTPUTS_PREFIX (default ``outputs``), GENAI_AWS_ENDPOINT_URL (moto / local mode).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.functions import environment
from runtime.functions.webhook_events import record_from_image
from runtime.jobs.output_links import output_key
from runtime.jobs.store import FINAL, SUCCEEDED

log = logging.getLogger(__name__)

MAX_LIST_PAGES = 100  # 100,000 keys per job: far beyond any job's outputs


def referenced_keys(record: Mapping[str, Any]) -> set[str]:
    """Object keys a record points at (an output's ``key``, or its URL's path)."""
    keys = set()
    for output in record.get("outputs") or []:
        key = output_key(output)
        if key:
            keys.add(key)
    return keys


def unreferenced(keys: Iterable[str], record: Mapping[str, Any], prefix: str = "outputs") -> list[str]:
    """The keys under the job's folder that its final record does not point at (none while not final)."""
    if record.get("status") not in FINAL:
        return []
    job_folder = _join(prefix, str(record["job_id"])) + "/"
    kept_folder = None
    if record.get("status") == SUCCEEDED and record.get("lease") is not None:
        kept_folder = f"{job_folder}{int(record['lease'])}/"
    referenced = referenced_keys(record)
    return [k for k in keys if k.startswith(job_folder) and k not in referenced
            and not (kept_folder and k.startswith(kept_folder))
            and not any(ref.endswith("/" + k) for ref in referenced)]


class OrphanSweeper:
    """Deletes a final job's unreferenced attempt outputs (S3: ListObjectsV2 and DeleteObject)."""

    def __init__(self, s3: Any, bucket: str, prefix: str = "outputs") -> None:
        self.s3, self.bucket, self.prefix = s3, bucket, prefix.strip("/")

    def sweep(self, record: Mapping[str, Any]) -> list[str]:
        """Delete what ``record`` (final) does not reference under its job's folder; the keys deleted."""
        folder = _join(self.prefix, str(record["job_id"])) + "/"
        orphans = unreferenced(self._keys(folder), record, self.prefix)
        for key in orphans:
            self.s3.delete_object(Bucket=self.bucket, Key=key)
        if orphans:
            log.info("job %s: deleted %d output(s) of attempts the final record does not reference: %s",
                     record["job_id"], len(orphans), orphans[:5])
        return orphans

    def handle(self, event: Mapping[str, Any]) -> int:
        """Stream records: sweep each job that turned final in this change. Raises on AWS errors, so the
        stream batch is retried (deleting twice is harmless)."""
        deleted = 0
        for change in event.get("Records", []):
            images = change.get("dynamodb") or {}
            old, new = record_from_image(images.get("OldImage")), record_from_image(images.get("NewImage"))
            if new is None or new.get("status") not in FINAL or (old or {}).get("status") in FINAL:
                continue
            deleted += len(self.sweep(new))
        return deleted

    def _keys(self, folder: str) -> list[str]:
        keys: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": folder}
        for _ in range(MAX_LIST_PAGES):
            page = self.s3.list_objects_v2(**kwargs)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return keys


def _join(prefix: str, name: str) -> str:
    return f"{prefix.strip('/')}/{name}" if prefix.strip("/") else name


_cached: dict[str, OrphanSweeper] = {}


def stream_handler(event: Mapping[str, Any], _context: Any = None) -> dict[str, Any]:
    """Lambda entry: the job table's stream (final transitions) -> delete unreferenced attempt outputs."""
    if "sweeper" not in _cached:
        _cached["sweeper"] = OrphanSweeper(environment.client("s3"), os.environ["GENAI_OUTPUTS_BUCKET"],
                                           os.environ.get("GENAI_OUTPUTS_PREFIX", "outputs"))
    return {"deleted": _cached["sweeper"].handle(event)}
