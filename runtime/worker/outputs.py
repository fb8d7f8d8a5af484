"""Outputs: upload a job's files to the outputs bucket under ``<prefix>/<job_id>/<attempt>/`` and return their keys.

The record stores the keys; links to them are made when they are handed out (runtime/jobs/output_links.py).

Keys are scoped by the attempt's lease (its fencing token, runtime.jobs.attempts), so two attempts of
one job never write the same object: the record points at the winner's, and an attempt that lost its
lease deletes its own (``discard``). An object is never replaced once a final record points at it, which
is what lets CloudFront serve it as immutable. Each object gets its content type, a long immutable
cache policy and metadata naming the job, the attempt and the generator (``test-pattern`` is labelled).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.backends.base import OutputFile
from runtime.worker.aws import AWSCallError, ObjectStore

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"


class OutputUploader:
    def __init__(self, store: ObjectStore, prefix: str = "outputs", concurrency: int = 4) -> None:
        self.store = store
        self.prefix = prefix.strip("/")
        self.concurrency = concurrency

    def key(self, job_id: str, name: str, attempt: int) -> str:
        key = f"{job_id}/{attempt}/{name}"
        return f"{self.prefix}/{key}" if self.prefix else key

    def upload(self, job_id: str, files: list[OutputFile], metadata: dict[str, Any] | None = None, *,
               attempt: int, on_key: Callable[[str], None] | None = None) -> list[dict]:
        """Upload every file; return ``[{"key", "content_type", "size"}]`` (and a video's ``video``
        facts) in input order.
        ``on_key`` hears every key before its PUT, so a failed or fenced-out attempt can discard them."""
        meta = {str(k): str(v)[:256] for k, v in (metadata or {}).items() if v is not None}
        meta["job-id"] = job_id
        meta["attempt"] = str(attempt)

        def put(f: OutputFile) -> dict[str, Any]:
            key = self.key(job_id, f.name, attempt)
            if on_key is not None:
                on_key(key)
            self.store.put(key, f.data, f.content_type, metadata=meta, cache_control=CACHE_CONTROL)
            uploaded = {"key": key, "content_type": f.content_type, "size": len(f.data)}
            return {**uploaded, "video": f.video} if f.video else uploaded

        if len(files) <= 1:
            return [put(f) for f in files]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(files)), thread_name_prefix="upload") as pool:
            return list(pool.map(put, files))

    def discard(self, keys: list[str]) -> None:
        """Delete an attempt's objects (best effort: a leftover is unreferenced, never served as a result)."""
        for key in keys:
            try:
                self.store.delete(key)
            except AWSCallError as exc:
                log.warning("could not delete unreferenced output %s: %s", key, exc)
