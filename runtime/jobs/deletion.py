"""Deleting a job's data on request (issue 44): what ``DELETE /v1/jobs/{id}`` does once the API found the caller's job.

A final job (succeeded, failed, canceled), in this order::

    1. its objects      every version of every object under ``<outputs prefix>/<job_id>/`` (every attempt's
                        outputs, a lost attempt's leftovers included), found with ListObjectVersions and removed
                        with DeleteObjects by version id: nothing is left behind, whether or not the bucket is
                        versioned (the outputs bucket is not, components/cdn_storage.py; a version id "null"
                        names the one object of an unversioned key)
    2. its record       one conditional write (still final, not yet deleted) turns it into a tombstone: the
                        prompt, the inputs (inline images included), the webhook URL, the labels, the output
                        keys and every error message go; id, owner, status, model, task, times, timings, the
                        attempt count and the attempts' cost stay (billing), with ``deleted_at``

The objects go first: if that fails the record still names the job's data and a second DELETE finishes the work;
if the record write fails after the objects went, a second DELETE finds no object and writes the tombstone. A
deleted job deleted again answers the same tombstone. A job not final is refused (``JobNotFinalError``, 409):
its worker may still upload. Inputs are never stored apart from the record (the worker fetches them and keeps
no copy), so the record is where they are removed.

The CDN stops serving a deleted output within about a second (outputs are uploaded ``private``:
runtime/worker/outputs.py), and a browser's own copy ages out within ``OUTPUT_MAX_AGE_SECONDS``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from runtime.jobs.errors import JobError, StoreUnavailableError
from runtime.jobs.store import FINAL, JobStore

DELETED_ERROR_MESSAGE = "(removed with the job's data)"
_MAX_DELETE_BATCH = 1000  # DeleteObjects takes at most 1,000 keys per call


class JobNotFinalError(JobError):
    """The job is queued or running: it is deleted once it is final (cancel it first)."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(f"job {job_id} is {status}; cancel it (POST /v1/jobs/{job_id}/cancel) and delete it once "
                         "it is canceled")
        self.status = status


class JobObjects(Protocol):
    def delete_job(self, job_id: str) -> int:
        """Delete every version of every object of the job; the number of versions deleted."""


class S3JobObjects:
    """A job's objects in the outputs bucket: every version under ``<prefix>/<job_id>/``."""

    def __init__(self, client: Any, bucket: str, prefix: str = "outputs") -> None:
        self._c, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def job_prefix(self, job_id: str) -> str:
        return f"{self.prefix}/{job_id}/" if self.prefix else f"{job_id}/"

    def delete_job(self, job_id: str) -> int:
        deleted = 0
        try:
            for batch in self._versions(self.job_prefix(job_id)):
                resp = self._c.delete_objects(Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True})
                if resp.get("Errors"):
                    first = resp["Errors"][0]
                    raise StoreUnavailableError(f"deleting {first.get('Key')} of job {job_id} failed: "
                                                f"{first.get('Code')} {first.get('Message')}")
                deleted += len(batch)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"deleting the objects of job {job_id} failed: {exc}") from exc
        return deleted

    def _versions(self, prefix: str) -> Any:
        batch: list[dict[str, str]] = []
        for page in self._c.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix):
            for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                batch.append({"Key": entry["Key"], "VersionId": entry.get("VersionId") or "null"})
                if len(batch) == _MAX_DELETE_BATCH:
                    yield batch
                    batch = []
        if batch:
            yield batch


def tombstone_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The spec of a deleted job: what it was (model, task), nothing of what it said."""
    return {"model": spec.get("model"), "task": spec.get("task"), "inputs": {}, "webhook": None,
            "webhook_events_filter": []}


class JobDeleter:
    def __init__(self, store: JobStore, objects: JobObjects, clock: Callable[[], float] = time.time) -> None:
        self.store, self.objects, self._clock = store, objects, clock

    def delete(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """Delete a final job's data (see the module's docstring); the tombstone record."""
        job_id = record["job_id"]
        if record.get("deleted_at") is not None:
            return dict(record)  # deleted already: the same answer
        if record["status"] not in FINAL:
            raise JobNotFinalError(job_id, record["status"])
        self.objects.delete_job(job_id)
        error = record.get("error")
        sets: dict[str, Any] = {
            "spec": json.dumps(tombstone_spec(record.get("spec") or {}), separators=(",", ":"), sort_keys=True),
            "outputs": [], "attempt_errors": [], "metadata": {}, "deleted_at": self._clock(),
            "error": {"code": error.get("code"), "message": DELETED_ERROR_MESSAGE} if isinstance(error, Mapping)
            else None}
        final = ", ".join(f":f{i}" for i in range(len(FINAL)))
        done = self.store.update(job_id, sets, condition=f"#s IN ({final}) AND attribute_not_exists(deleted_at)",
                                 values={f":f{i}": status for i, status in enumerate(sorted(FINAL))})
        if done is not None:
            return done
        current = self.store.get(job_id)  # a racing DELETE wrote it first: its tombstone is the answer
        if current is None or current.get("deleted_at") is None:
            raise StoreUnavailableError(f"job {job_id} changed while it was being deleted; try again")
        return current
