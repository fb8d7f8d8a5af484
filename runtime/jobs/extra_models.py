"""The model files a job needs beyond its ``model``: the one list the worker makes local before the run.

``extra_model_ids(spec)`` answers the model-store ids, in the job's order, each once. The worker
(runtime.worker.extra_models) fetches each through the model cache, keeps it pinned for the run (counted in
the cache's budget like any entry) and hands the backend ``JobContext.extra_models``: id -> (local path, kind).

Sources of ids, one per kind of job:
- ``inputs.loras`` of the image and video tasks (issue 40): each LoRA's store id.
"""

from __future__ import annotations

from runtime.jobs.schema import JobSpec


def extra_model_ids(spec: JobSpec) -> list[str]:
    """Store ids of the files ``spec`` needs besides its model, in order, without repeats (never the model)."""
    ids: list[str] = []
    for lora in getattr(spec.inputs, "loras", ()):
        ids.append(lora.model)
    return [i for n, i in enumerate(ids) if i != spec.model and i not in ids[:n]]
