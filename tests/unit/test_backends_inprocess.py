"""Registry, test-pattern, and the in-process diffusers / Neuron adapters with injected fake pipelines."""

from __future__ import annotations

import io
import json
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from runtime.backends import base
from runtime.backends.base import BackendError, BackendUnavailable, JobInputError, JobInterrupted
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.neuron import NeuronBackend
from runtime.backends.test_pattern import TestPatternBackend
from tests.job_context import job_context, png


def test_registry_resolves_every_configured_backend_name():
    from runtime.agent_config import BACKENDS

    assert set(base.REGISTRY) == set(BACKENDS)
    for name in BACKENDS:
        assert issubclass(base.backend_class(name), base.Backend)
    with pytest.raises(BackendError, match="unknown backend"):
        base.backend_class("nope")


def test_test_pattern_is_deterministic_labelled_and_cancellable():
    backend = TestPatternBackend(delay_seconds=0)
    spec = {"prompt": "a cat", "seed": 5, "width": 96, "height": 64}
    a = backend.run(job_context("j1", **spec)).outputs[0]
    b = backend.run(job_context("j2", **spec)).outputs[0]
    other = backend.run(job_context("j3", **{**spec, "seed": 6})).outputs[0]
    assert a.data == b.data != other.data
    image = Image.open(io.BytesIO(a.data))
    assert image.size == (96, 64) and image.text["generator"] == "test-pattern"
    assert backend.run(job_context("j4", **spec)).metadata["generator"] == "test-pattern"
    slow = TestPatternBackend(delay_seconds=5)
    ctx = job_context("j5", **spec)
    threading.Timer(0.1, ctx.cancel.set).start()
    with pytest.raises(JobInterrupted):
        slow.run(ctx)


def test_test_pattern_reads_the_typed_inputs_with_the_apis_defaults():
    backend = TestPatternBackend(delay_seconds=0)
    result = backend.run(job_context("j1", seed=3))  # no size given: the API's default, 1024 x 1024
    assert Image.open(io.BytesIO(result.outputs[0].data)).size == (1024, 1024)
    assert result.metadata["seed"] == 3
    three = backend.run(job_context("j2", seed=3, num_outputs=3, width=64, height=64))
    assert [o.name for o in three.outputs] == ["image-0.png", "image-1.png", "image-2.png"]
    # img2img without width/height: the input image's size (the API's documented default)
    img = backend.run(job_context("j3", task="img2img", seed=1, images={"image": png(48, 40)}))
    assert Image.open(io.BytesIO(img.outputs[0].data)).size == (48, 40)
    drawn = job_context("j4", width=64, height=64)  # seed null: one is drawn for the attempt and reported
    assert isinstance(backend.run(drawn).metadata["seed"], int) and drawn.job.inputs.seed is not None


class FakePipeline:
    def __init__(self, steps_seen: list, fail: Exception | None = None):
        self.calls, self.steps_seen, self.fail = [], steps_seen, fail

    def __call__(self, callback_on_step_end=None, **kwargs):
        self.calls.append(kwargs)
        if self.fail:
            raise self.fail
        for step in range(kwargs.get("num_inference_steps", 2)):
            callback_on_step_end(self, step, 0, {})
            self.steps_seen.append(step)
        # As diffusers: one image per prompt in a list (or one prompt) times num_images_per_prompt.
        prompts = kwargs.get("prompt")
        n = (len(prompts) if isinstance(prompts, list) else 1) * kwargs.get("num_images_per_prompt", 1)
        return SimpleNamespace(images=[Image.new("RGB", (8, 8)) for _ in range(n)])


def test_diffusers_loads_once_per_model_and_task_and_maps_inputs(tmp_path: Path):
    built, steps = [], []

    def factory(path: Path, task: str):
        built.append((path, task))
        return FakePipeline(steps)

    backend = DiffusersBackend(pipeline_factory=factory, generator_factory=lambda seed: ("gen", seed))
    backend.load_model("m", tmp_path)
    spec = {"prompt": "p", "steps": 3, "guidance": 4.0, "seed": 9, "num_outputs": 2}
    result = backend.run(job_context("j1", **spec))
    backend.run(job_context("j2", **spec))
    assert built == [(tmp_path, "txt2img")] and len(result.outputs) == 2
    call = backend._pipelines[("m", "txt2img")].calls[0]
    assert call["generator"] == [("gen", 9), ("gen", 10)]  # image i of a job: its own generator, seed + i
    assert call["guidance_scale"] == 4.0 and call["num_inference_steps"] == 3
    img_ctx = job_context("j3", task="img2img", prompt="p", strength=0.3, images={"image": png(64, 64)})
    backend.run(img_ctx)
    assert built[-1] == (tmp_path, "img2img")


def test_diffusers_cancel_between_steps_and_error_mapping(tmp_path: Path):
    steps: list = []
    backend = DiffusersBackend(pipeline_factory=lambda p, t: FakePipeline(steps), generator_factory=lambda s: None)
    backend.load_model("m", tmp_path)
    ctx = job_context("j1", steps=50)
    ctx.cancel.set()
    with pytest.raises(JobInterrupted):
        backend.run(ctx)
    assert steps == []
    oom = DiffusersBackend(pipeline_factory=lambda p, t: FakePipeline([], RuntimeError("CUDA out of memory")),
                           generator_factory=lambda s: None)
    oom.load_model("m", tmp_path)
    with pytest.raises(BackendUnavailable, match="device memory"):
        oom.run(job_context("j2"))


def test_neuron_rejects_shapes_it_was_not_compiled_for(tmp_path: Path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text(json.dumps({"neuron": {"static_width": 64, "static_height": 64}}))
    backend = NeuronBackend(pipeline_factory=lambda p, t: FakePipeline([]))
    backend.load_model("m", tmp_path)
    assert backend.compiled_shape() == (512, 512)
    assert backend.run(job_context("j1", width=512, height=512)).outputs
    with pytest.raises(JobInputError, match="compiled for 512x512"):
        backend.run(job_context("j2", width=768, height=512))


def test_missing_runtime_libraries_are_reported(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffusers", None)  # as on an instance without the diffusers extra
    backend = DiffusersBackend(generator_factory=lambda s: None)
    backend.load_model("m", tmp_path)
    with pytest.raises(BackendUnavailable, match="needs diffusers"):
        backend.run(job_context("j"))
