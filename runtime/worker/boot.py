"""Boot of the agent: hot models to the local cache, backend ready and warmed up, launching action completed.

A hot model that cannot be fetched (not uploaded yet, store unreachable) is a warning and a ``BootWarnings``
metric: jobs fetch it on demand. While the hot models download, the launching lifecycle action is
heartbeated (``Lifecycle.launching_heartbeats``): a cold boot's downloads may outlast the hook's timeout.
A warm-up that fails, or one that skipped a cold compile (the diffusers backend serves eager until a store
holds its compile cache), is a warning too. A backend that never gets
ready raises; the entry point then abandons the launch (runtime/worker/__main__.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from runtime import metric_names as m
from runtime.backends.base import Backend, BackendError
from runtime.model_cache import CachedModel, ModelCache, ModelCacheError
from runtime.worker.lifecycle import Lifecycle
from runtime.worker.metrics import Metrics

log = logging.getLogger(__name__)


def boot(*, hot_models: Sequence[str], ready_timeout_s: float, model_cache: ModelCache | None, backend: Backend,
         lifecycle: Lifecycle, metrics: Metrics, worker_id: str) -> None:
    with lifecycle.launching_heartbeats():
        warm = preload(hot_models, model_cache, metrics)
    backend.wait_ready(ready_timeout_s)
    warm_up(backend, metrics, warm)
    log.info("backend ready", extra={"check": backend.check()})
    lifecycle.complete_launching()
    metrics.emit({m.BOOT_TO_READY: uptime_ms()}, {"worker_id": worker_id})


def preload(hot_models: Sequence[str], model_cache: ModelCache | None, metrics: Metrics) -> CachedModel | None:
    """Hot models into the local cache; returns the first one cached (the backend warms it up)."""
    warm = None
    for model_id in hot_models:
        if model_cache is None:
            break
        try:
            cached = model_cache.ensure(model_id)
        except ModelCacheError as exc:
            log.warning("hot model %s not preloaded: %s", model_id, exc, extra={"model": model_id})
            metrics.count(m.BOOT_WARNINGS, what="hot-model", model=model_id, error=str(exc)[:300])
            continue
        metrics.count(m.MODEL_CACHE_HITS if cached.hit else m.MODEL_CACHE_MISSES, model=model_id)
        warm = warm or cached
    return warm


def warm_up(backend: Backend, metrics: Metrics, cached: CachedModel | None) -> None:
    """A warm-up that fails is a boot warning: jobs then load and compile on demand."""
    if cached is None:
        return
    try:
        report = backend.warm_up(cached.model_id, cached.path)
    except BackendError as exc:
        log.warning("warm-up of %s failed: %s", cached.model_id, exc, extra={"model": cached.model_id})
        metrics.count(m.BOOT_WARNINGS, what="warm-up", model=cached.model_id, error=str(exc)[:300])
        return
    if report:
        log.info("backend warmed up", extra={"warm_up": report})
        if report.get("cold_compile_skipped"):
            metrics.count(m.BOOT_WARNINGS, what="compile-cache-cold", model=cached.model_id,
                          error="no compile cache for this key: serving eager (genai-compile-cache fills it)")


def uptime_ms() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0]) * 1000
    except (OSError, ValueError, IndexError):
        return 0.0
