"""Outputs: upload a job's files to the outputs bucket under ``<prefix>/<job_id>/`` and return CDN URLs.

Keys are deterministic (``<prefix>/<job_id>/<file name>``), so a redelivered job overwrites the same
objects instead of leaving orphans. Each object gets its content type, a long immutable cache policy
(CloudFront serves it) and metadata naming the job and the generator (``test-pattern`` is labelled).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.backends.base import OutputFile
from runtime.worker.aws import ObjectStore

log = logging.getLogger(__name__)

CACHE_CONTROL = "public, max-age=31536000, immutable"


class OutputUploader:
    def __init__(self, store: ObjectStore, cdn_base_url: str, prefix: str = "outputs", concurrency: int = 4) -> None:
        self.store = store
        self.cdn_base_url = cdn_base_url.rstrip("/")
        self.prefix = prefix.strip("/")
        self.concurrency = concurrency

    def key(self, job_id: str, name: str) -> str:
        return f"{self.prefix}/{job_id}/{name}" if self.prefix else f"{job_id}/{name}"

    def url(self, key: str) -> str:
        return f"{self.cdn_base_url}/{key}"

    def upload(self, job_id: str, files: list[OutputFile], metadata: dict[str, Any] | None = None) -> list[dict]:
        """Upload every file; return ``[{"url", "content_type", "key", "size"}]`` in input order."""
        meta = {str(k): str(v)[:256] for k, v in (metadata or {}).items() if v is not None}
        meta["job-id"] = job_id

        def put(f: OutputFile) -> dict[str, Any]:
            key = self.key(job_id, f.name)
            self.store.put(key, f.data, f.content_type, metadata=meta, cache_control=CACHE_CONTROL)
            return {"url": self.url(key), "content_type": f.content_type, "key": key, "size": len(f.data)}

        if len(files) <= 1:
            return [put(f) for f in files]
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(files)), thread_name_prefix="upload") as pool:
            return list(pool.map(put, files))
