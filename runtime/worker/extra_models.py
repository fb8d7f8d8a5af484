"""The job's extra model files (runtime.jobs.extra_models: LoRAs, files a workflow's loader nodes name), made
local through the model cache before the backend runs.

Each id goes through ``ModelCache.use``: downloaded once (or found on disk), pinned until the ``pins`` stack
closes (the end of the call), and counted in the cache's size budget like the job's model, so a run never
loses a file it was given and a LoRA never pushes the cache past its cap. The backend gets
``JobContext.extra_models``: store id -> ``ExtraModel(path, kind)``. An id the store does not know fails the
job as invalid input (``ModelNotFound``, runtime.worker.failures), a failed download is retried.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from runtime.backends.base import ExtraModel
from runtime.jobs.extra_models import WorkflowModels, extra_model_ids
from runtime.jobs.schema import JobSpec
from runtime.model_cache import ModelCache


def pin_extra_models(cache: ModelCache | None, spec: JobSpec, pins: contextlib.ExitStack,
                     workflow_models: WorkflowModels | None = None) -> dict[str, ExtraModel]:
    """Make every extra model file of ``spec`` local and pinned on ``pins``; return id -> ExtraModel. Without a
    cache (no model store configured) the mapping is empty: a backend refuses a job whose file it lacks."""
    if cache is None:
        return {}
    files: dict[str, ExtraModel] = {}
    for model_id in extra_model_ids(spec, workflow_models):
        cached = pins.enter_context(cache.use(model_id))
        files[model_id] = ExtraModel(cached.path, cached.kind)
    return files


def fetch_extra_models(ensure: Callable[[str], object], spec: JobSpec,
                       workflow_models: WorkflowModels | None = None) -> None:
    """Make the extra model files local ahead of the job (the prefetch; not pinned: the run pins them)."""
    for model_id in extra_model_ids(spec, workflow_models):
        ensure(model_id)
