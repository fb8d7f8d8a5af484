"""The extra-model-files seam (issues 40 and 41): the ids a job needs beyond its model
(runtime.jobs.extra_models), made local through the model cache, pinned for the run and counted in its budget,
and handed to the backend as id -> (path, kind) (runtime.worker.extra_models, JobContext.extra_models)."""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.backends.base import Backend, BackendResult, ExtraModel, JobContext, OutputFile
from runtime.jobs.attempts import Attempt
from runtime.jobs.extra_models import extra_model_ids
from runtime.jobs.schema import JobSpec
from runtime.model_cache import CacheFull, ModelCache, ModelNotFound, RemoteFile, RemoteModel
from runtime.queues.base import QueueMessage, ReceivedJob
from runtime.worker.execution import Executor
from runtime.worker.extra_models import fetch_extra_models, pin_extra_models
from runtime.worker.running_job import RunningJob
from tests.unit.test_model_cache import FakeStore
from tests.unit.test_worker_parts import Settled, build_executor


def _spec(loras=(), model="sdxl/base", task="txt2img", **inputs) -> JobSpec:
    extra = {"image": "https://example.com/a.png"} if task in ("img2img", "img2video") else {}
    return JobSpec.parse({"model": model, "task": task,
                          "inputs": {"prompt": "p", "seed": 1, "loras": list(loras), **extra, **inputs}})


def _store(sizes: dict[str, tuple[str, int]]) -> tuple[FakeStore, dict[str, RemoteModel]]:
    """A store of model id -> (kind, bytes)."""
    objects, models = {}, {}
    for model_id, (kind, size) in sizes.items():
        data = os.urandom(size)
        key = f"models/{kind}/{model_id}/v1/model.safetensors"
        objects[key] = data
        models[model_id] = RemoteModel(model_id, "v1", kind, (RemoteFile("model.safetensors", key, size,
                                                                         hashlib.sha256(data).hexdigest()),))
    return FakeStore(objects), models


def _resolver(models):
    def resolve(model_id):
        if model_id not in models:
            raise ModelNotFound(f"model {model_id!r} is not in the manifest")
        return models[model_id]
    return resolve


# -- the ids -------------------------------------------------------------------------------------------------
def test_the_ids_are_the_jobs_loras_in_order_for_every_image_and_video_task():
    loras = [{"model": "sdxl/pixel", "weight": 0.8}, {"model": "sdxl/ink", "weight": -0.5}]
    for task in ("txt2img", "img2img", "txt2video", "img2video"):
        assert extra_model_ids(_spec(loras, task=task)) == ["sdxl/pixel", "sdxl/ink"], task
    assert extra_model_ids(_spec()) == []
    workflow = JobSpec.parse({"model": "m", "task": "comfyui-workflow",
                              "inputs": {"workflow": {"1": {"class_type": "KSampler", "inputs": {}}}}})
    assert extra_model_ids(workflow) == []


def test_the_ids_never_repeat_and_never_name_the_jobs_model():
    spec = _spec([{"model": "sdxl/pixel"}])
    assert extra_model_ids(replace(spec, model="sdxl/pixel")) == []


# -- the worker: through the cache, pinned, counted, handed over -----------------------------------------------
class Recording(Backend):
    """Uses model files; records what each run was handed and what the cache held meanwhile."""

    name = "recording"

    def __init__(self, cache: ModelCache) -> None:
        self.cache = cache
        self.seen: dict[str, ExtraModel] | None = None
        self.pinned_during_run: set[str] = set()
        self.during_run = None

    def wait_ready(self, timeout: float) -> None:
        pass

    def run(self, ctx: JobContext) -> BackendResult:
        self.seen = dict(ctx.extra_models)
        self.pinned_during_run = {folder.name for folder in self.cache._pins}
        if self.during_run is not None:
            self.during_run()
        return BackendResult([OutputFile("a.png", b"x", "image/png")])


def _executor(backend: Backend, cache: ModelCache | None) -> tuple[Executor, Settled]:
    executor, settled, _ = build_executor(backend, model_cache=cache)
    return executor, settled


def _job(spec: JobSpec, job_id: str = "j1") -> RunningJob:
    message = QueueMessage(job_id=job_id, job=spec.to_dict())
    return RunningJob(ReceivedJob(message, handle=job_id), JobContext(job_id=job_id, job=spec),
                      Attempt("started", {}, 1, 1))


SIZES = {"sdxl/base": ("checkpoint", 4_000), "sdxl/pixel": ("lora", 1_000), "sdxl/ink": ("lora", 1_500),
         "sdxl/other": ("checkpoint", 4_000)}


def test_the_backend_gets_each_lora_as_a_local_path_and_kind_pinned_for_the_run(tmp_path: Path):
    store, models = _store(SIZES)
    cache = ModelCache(store, _resolver(models), tmp_path / "cache", 10_000)
    backend = Recording(cache)
    executor, settled = _executor(backend, cache)
    spec = _spec([{"model": "sdxl/pixel", "weight": 0.8}, {"model": "sdxl/ink"}])
    executor.execute([_job(spec)])
    assert isinstance(settled.answers["j1"], BackendResult)
    assert set(backend.seen) == {"sdxl/pixel", "sdxl/ink"}
    for model_id, extra in backend.seen.items():
        assert extra.kind == "lora"
        assert extra.path.read_bytes() == store.objects[models[model_id].files[0].key]
    assert backend.pinned_during_run == {"sdxl--base@v1", "sdxl--pixel@v1", "sdxl--ink@v1"}
    assert not cache._pins  # let go once the call ended


def test_pinned_loras_count_in_the_cache_budget(tmp_path: Path):
    """Base 4000 + LoRAs 2500 pinned in a 12000-byte cache that also holds a 4000-byte model: a 6000-byte
    model does not fit during the run (only that one is evictable), and fits once the run let them go."""
    store, models = _store(SIZES)
    cache = ModelCache(store, _resolver(models), tmp_path / "cache", 12_000)
    cache.ensure("sdxl/other")
    cache.clock = lambda: 2_000_000_000.0  # everything after this is newer than sdxl/other
    big = RemoteModel("sdxl/huge", "v1", "checkpoint", (RemoteFile("model.safetensors", "k", 6_000, None),))
    models["sdxl/huge"] = big
    store.objects["k"] = os.urandom(6_000)
    backend = Recording(cache)
    failures = []

    def fetch_huge():
        assert cache.used_bytes() == 4_000 + 4_000 + 1_000 + 1_500
        with pytest.raises(CacheFull):
            cache.ensure("sdxl/huge")  # 6500 pinned + 6000 > 12000 even with sdxl/other evicted
        failures.append("cache-full")

    backend.during_run = fetch_huge
    executor, settled = _executor(backend, cache)
    executor.execute([_job(_spec([{"model": "sdxl/pixel"}, {"model": "sdxl/ink"}]))])
    assert isinstance(settled.answers["j1"], BackendResult), settled.answers["j1"]
    assert failures == ["cache-full"]
    assert cache.ensure("sdxl/huge").size == 6_000  # the run's pins are gone: its files are evictable again


def test_an_unknown_lora_id_fails_the_job_before_the_backend_runs(tmp_path: Path):
    store, models = _store(SIZES)
    cache = ModelCache(store, _resolver(models), tmp_path / "cache", 10_000)
    backend = Recording(cache)
    executor, settled = _executor(backend, cache)
    executor.execute([_job(_spec([{"model": "sdxl/missing"}]))])
    assert isinstance(settled.answers["j1"], ModelNotFound)
    assert backend.seen is None and not cache._pins


def test_without_a_cache_the_mapping_is_empty_and_the_prefetch_fetches_each_id():
    spec = _spec([{"model": "sdxl/pixel"}, {"model": "sdxl/ink"}])
    with contextlib.ExitStack() as pins:
        assert pin_extra_models(None, spec, pins) == {}
    asked: list[str] = []
    fetch_extra_models(asked.append, spec)
    assert asked == ["sdxl/pixel", "sdxl/ink"]
