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
from typing import TYPE_CHECKING, Any

from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.model_cache import ModelCacheError

if TYPE_CHECKING:
    from runtime.worker.agent import Agent

log = logging.getLogger("runtime.worker.agent")


def boot(agent: Agent) -> None:
    with agent.lifecycle.launching_heartbeats():
        warm = preload(agent)
    agent.backend.wait_ready(agent.config.backend_ready_timeout_seconds)
    warm_up(agent, warm)
    log.info("backend ready", extra={"check": agent.backend.check()})
    agent.lifecycle.complete_launching()
    agent.metrics.emit({m.BOOT_TO_READY: uptime_ms()}, {"worker_id": agent.worker_id})


def preload(agent: Agent) -> Any:
    """Hot models into the local cache; returns the first one cached (the backend warms it up)."""
    warm = None
    for model_id in agent.config.hot_models:
        if agent.model_cache is None:
            break
        try:
            cached = agent.model_cache.ensure(model_id)
        except ModelCacheError as exc:
            log.warning("hot model %s not preloaded: %s", model_id, exc, extra={"model": model_id})
            agent.metrics.count(m.BOOT_WARNINGS, what="hot-model", model=model_id, error=str(exc)[:300])
            continue
        agent.metrics.count(m.MODEL_CACHE_HITS if cached.hit else m.MODEL_CACHE_MISSES, model=model_id)
        warm = warm or cached
    return warm


def warm_up(agent: Agent, cached: Any) -> None:
    """A warm-up that fails is a boot warning: jobs then load and compile on demand."""
    if cached is None:
        return
    try:
        report = agent.backend.warm_up(cached.model_id, cached.path)
    except BackendError as exc:
        log.warning("warm-up of %s failed: %s", cached.model_id, exc, extra={"model": cached.model_id})
        agent.metrics.count(m.BOOT_WARNINGS, what="warm-up", model=cached.model_id, error=str(exc)[:300])
        return
    if report:
        log.info("backend warmed up", extra={"warm_up": report})
        if report.get("cold_compile_skipped"):
            agent.metrics.count(m.BOOT_WARNINGS, what="compile-cache-cold", model=cached.model_id,
                                error="no compile cache for this key: serving eager (genai-compile-cache fills it)")


def uptime_ms() -> float:
    try:
        with open("/proc/uptime") as fh:
            return float(fh.read().split()[0]) * 1000
    except (OSError, ValueError, IndexError):
        return 0.0
