"""Where ``GET /v1/models`` gets its list: the model store manifest when a bucket is configured
(cached per instance), else the stack's hot models. Injectable: anything with ``list_models()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)


class ModelsSource(Protocol):
    def list_models(self) -> tuple[str, list[dict[str, Any]]]:
        """(source name, models) where each model has at least ``id`` and ``hot``."""
        ...


class StaticModels:
    def __init__(self, hot_models: Sequence[str]):
        self.hot_models = tuple(hot_models)

    def list_models(self) -> tuple[str, list[dict[str, Any]]]:
        return "config", [{"id": m, "hot": True} for m in self.hot_models]


class ManifestModels:
    """Models registered in the model store manifest (runtime.model_store), cached ``cache_seconds``."""

    def __init__(self, s3_client: Any, bucket: str, hot_models: Sequence[str] = (), cache_seconds: float = 60.0):
        self.s3, self.bucket, self.hot = s3_client, bucket, set(hot_models)
        self.cache_seconds = cache_seconds
        self._cached: tuple[float, list[dict[str, Any]]] | None = None
        self._lock = threading.Lock()

    def list_models(self) -> tuple[str, list[dict[str, Any]]]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < self.cache_seconds:
                return "manifest", self._cached[1]
        try:
            from runtime.model_store.manifest import ManifestStore

            manifest = ManifestStore(self.s3, self.bucket).load()
        except Exception as exc:  # noqa: BLE001 - any manifest trouble falls back to the configured list
            log.warning("model manifest unavailable, listing configured hot models: %s", exc)
            return StaticModels(sorted(self.hot)).list_models()
        models = [{"id": mid, "kind": entry.kind, "version": entry.version, "size_bytes": entry.total_size,
                   "hot": mid in self.hot, **({"family": entry.family} if entry.family else {})}
                  for mid, entry in sorted(manifest.models.items())]
        with self._lock:
            self._cached = (time.monotonic(), models)
        return "manifest", models
