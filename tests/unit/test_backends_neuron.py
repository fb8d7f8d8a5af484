"""The optimum-neuron backend's argument mapping and static-shape checks (no Inferentia device or Neuron SDK
here: the pipeline is injected; optimum-neuron's NeuronStableDiffusionPipeline takes diffusers' arguments)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from runtime.backends.base import BackendUnavailable, JobInputError
from runtime.backends.neuron import NeuronBackend
from tests.job_context import job_context


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, callback_on_step_end=None, **kwargs):
        self.calls.append({**kwargs, "torch_seed": torch.initial_seed()})
        n = kwargs.get("num_images_per_prompt", 1)
        return SimpleNamespace(images=[Image.new("RGB", (64, 64)) for _ in range(n)])


def _compiled(folder: Path, **static: int) -> Path:
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "config.json").write_text(json.dumps({"neuron": {f"static_{k}": v for k, v in static.items()}}))
    return folder


def test_one_prompt_per_call_seed_set_globally_and_no_generator(tmp_path: Path):
    pipe = Recorder()
    backend = NeuronBackend(pipeline_factory=lambda p, t: pipe)
    backend.load_model("m", _compiled(tmp_path, width=64, height=64, num_images_per_prompt=2))
    # 512 x 512 is the compiled shape: the API's default size (1024) would be refused by the compiled model
    result = backend.run(job_context("j1", prompt="p", negative_prompt="n", seed=77, num_outputs=2, steps=4,
                                     width=512, height=512))
    call = pipe.calls[0]
    assert "generator" not in call and call["torch_seed"] == 77
    assert call["prompt"] == "p" and call["negative_prompt"] == "n" and call["num_images_per_prompt"] == 2
    assert call["width"] == call["height"] == 512 and len(result.outputs) == 2


def test_shapes_and_image_counts_other_than_compiled_are_input_errors(tmp_path: Path):
    backend = NeuronBackend(pipeline_factory=lambda p, t: Recorder())
    backend.load_model("m", _compiled(tmp_path, width=128, height=128, num_images_per_prompt=1))
    assert backend.compiled_shape() == (1024, 1024)
    with pytest.raises(JobInputError, match="compiled for 1 image"):
        backend.run(job_context("j1", width=1024, height=1024, num_outputs=2))
    outcomes = backend.run_batch([job_context("a", width=1024, height=1024),
                                  job_context("b", width=512, height=512)])
    assert outcomes[0].outputs and isinstance(outcomes[1], JobInputError)


def test_without_optimum_neuron_the_backend_says_so(tmp_path: Path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "optimum", None)
    backend = NeuronBackend()
    backend.load_model("m", tmp_path)
    with pytest.raises(BackendUnavailable, match="optimum-neuron"):
        backend.run(job_context("j"))


def test_the_neuron_ami_installs_optimum_neuron_with_its_diffusers_pipelines():
    """optimum-neuron's Stable Diffusion pipelines need its ``diffusers`` extra; ``neuronx`` alone has none."""
    import re

    import hcl2

    root = Path(__file__).resolve().parents[2]
    with (root / "packer" / "release.auto.pkrvars.hcl").open() as fh:
        packages = [p.strip("\"") for p in hcl2.load(fh)["neuron_pip_packages"]]  # python-hcl2 keeps the quotes
    pins = [p for p in packages if p.startswith("optimum-neuron[")]
    assert len(pins) == 1 and re.fullmatch(r"optimum-neuron\[([a-z,]+)\]==[0-9.]+", pins[0])
    assert {"neuronx", "diffusers"} <= set(pins[0].split("[")[1].split("]")[0].split(","))


def test_a_lora_job_that_reached_a_neuron_worker_fails_as_input_not_as_base_images(tmp_path: Path):
    """The API refuses LoRAs on Neuron fleets (GENAI_LORA_TASKS is []); a job queued anyway never runs without them."""
    pipe = Recorder()
    backend = NeuronBackend(pipeline_factory=lambda p, t: pipe)
    backend.load_model("m", _compiled(tmp_path, width=64, height=64, num_images_per_prompt=1))
    with pytest.raises(JobInputError, match="cannot add a LoRA"):
        backend.run(job_context("j1", width=512, height=512, loras=[{"model": "sd15/pix"}]))
    assert pipe.calls == []
