"""The model files a job needs beyond its ``model``: the one list the worker makes local before the run.

``extra_model_ids(spec)`` answers the model-store ids, in the job's order, each once. The worker
(runtime.worker.extra_models) fetches each through the model cache, keeps it pinned for the run (counted in
the cache's budget like any entry) and hands the backend ``JobContext.extra_models``: id -> (local path, kind).

Sources of ids, one per kind of job:
- ``inputs.loras`` of the image and video tasks (issue 40): each LoRA's store id.
- the files a ``comfyui-workflow`` graph's loader nodes name (issue 41): ``workflow_models(graph)`` maps them to
  store ids (runtime.worker.workflow_models: the image's node catalog and the model store manifest, the same
  mapping the API checked the graph with at submit, runtime/workflow_files.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from runtime.jobs.models import WorkflowInputs
from runtime.jobs.schema import JobSpec

# graph -> the store ids of the files its loader nodes name (None: this worker cannot map them)
WorkflowModels = Callable[[dict[str, Any]], list[str]]


def extra_model_ids(spec: JobSpec, workflow_models: WorkflowModels | None = None) -> list[str]:
    """Store ids of the files ``spec`` needs besides its model, in order, without repeats (never the model)."""
    ids: list[str] = []
    for lora in getattr(spec.inputs, "loras", ()):
        ids.append(lora.model)
    if workflow_models is not None and isinstance(spec.inputs, WorkflowInputs):
        ids.extend(workflow_models(spec.inputs.graph()))
    return [i for n, i in enumerate(ids) if i != spec.model and i not in ids[:n]]
