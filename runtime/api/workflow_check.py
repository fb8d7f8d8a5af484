"""The check of a ``comfyui-workflow`` job at submit: node classes against the node catalog of the image the fleet
runs, loader files against the model store manifest (runtime/workflow_files.py), before anything is queued.

- The catalog's location is ``GENAI_NODE_CATALOG`` (``s3://bucket/key``, set by the stack from the AMI it deploys:
  docs/amis.md "Node catalog"); the manifest is the model bucket's ``manifest.json``. Both are read with the
  API's own S3 client and cached ``cache_seconds`` per instance.
- Nothing to judge by is never a refusal: no catalog configured, or none published at that key yet, or S3 not
  answering, and the job is accepted with a ``Warning`` header saying what was not checked (likewise the files
  when no model bucket is configured). Only a catalog that is there and lacks a class, or a manifest that lacks a
  file, refuses (422, one error per node and missing class or file).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from runtime.node_catalog import NodeCatalog
from runtime.workflow_files import ManifestFiles, WorkflowProblem, check_workflow, loader_files, unjudged_folders

log = logging.getLogger(__name__)

T = TypeVar("T")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> (bucket, key); ValueError naming the variable otherwise."""
    parts = urlsplit(uri)
    if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
        raise ValueError(f"GENAI_NODE_CATALOG={uri!r}: must be s3://<bucket>/<key> of a node catalog JSON")
    return parts.netloc, parts.path.lstrip("/")


class _Cached(Generic[T]):
    """The value ``load()`` gives, reloaded after ``seconds``; None (and a reason) when it cannot be had."""

    def __init__(self, load: Callable[[], T | None], seconds: float):
        self._load, self.seconds = load, seconds
        self._at: float | None = None
        self._value: T | None = None
        self.reason = ""
        self._lock = threading.Lock()

    def get(self) -> T | None:
        with self._lock:
            if self._at is not None and time.monotonic() - self._at < self.seconds:
                return self._value
            try:
                self._value, self.reason = self._load(), ""
            except Exception as exc:  # noqa: BLE001 - no answer is "cannot judge", never a refusal
                log.warning("workflow check: %s", exc)
                self._value, self.reason = None, str(exc)
            self._at = time.monotonic()
            return self._value


def s3_catalog(s3: Any, uri: str) -> Callable[[], NodeCatalog | None]:
    bucket, key = parse_s3_uri(uri)

    def load() -> NodeCatalog | None:
        try:
            body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code in ("NoSuchKey", "404"):
                return None  # not published yet
            raise RuntimeError(f"node catalog {uri} unreadable: {exc}") from exc
        return NodeCatalog.from_json(body)

    return load


def s3_manifest_files(s3: Any, bucket: str) -> Callable[[], ManifestFiles]:
    def load() -> ManifestFiles:
        from runtime.model_store.manifest import ManifestStore

        return ManifestFiles(ManifestStore(s3, bucket).load().models)

    return load


@dataclass
class Verdict:
    problems: list[WorkflowProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def header(self) -> str | None:
        """RFC 9111's ``Warning`` field (299: a persistent warning), one quoted text per warning."""
        if not self.warnings:
            return None
        return ", ".join('299 genai-fleet "' + w.replace('"', "'") + '"' for w in self.warnings)


class WorkflowChecker:
    def __init__(self, catalog: Callable[[], NodeCatalog | None] | None,
                 manifest: Callable[[], ManifestFiles] | None, cache_seconds: float = 60.0):
        self._catalog = _Cached(catalog, cache_seconds) if catalog else None
        self._manifest = _Cached(manifest, cache_seconds) if manifest else None

    def check(self, graph: Mapping[str, Any]) -> Verdict:
        verdict = Verdict()
        catalog = self._catalog.get() if self._catalog else None
        if catalog is None:
            why = self._catalog.reason if self._catalog and self._catalog.reason else (
                "no node catalog is published for this fleet's ComfyUI image" if self._catalog
                else "the API has no node catalog configured (GENAI_NODE_CATALOG)")
            verdict.warnings.append(f"workflow not checked: {why}; it may fail on the worker")
            return verdict
        files = self._manifest.get() if self._manifest else None
        if files is None:
            why = self._manifest.reason if self._manifest else "no model store is configured"
            verdict.warnings.append(f"model files not checked: {why}")
        verdict.problems = check_workflow(graph, catalog, files)
        skipped = unjudged_folders(loader_files(graph, catalog))
        if skipped:
            verdict.warnings.append(f"files in model folders {', '.join(skipped)} not checked: the model store "
                                    "has no kind for them")
        return verdict
