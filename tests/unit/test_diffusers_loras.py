"""LoRAs on the diffusers backend's resident base (issue 40), on the CPU with the tiny pipeline and tiny LoRAs made
for it (bench.diffusers_loras): a LoRA job matches diffusers' own ``load_lora_weights`` for the same seed, differs
from the job without it, never reloads the base, and after the LoRA is unloaded the base UNet's weights hash as
before; jobs with different LoRA sets or weights never share a pipeline call."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.diffusers_loras import tiny_lora
from bench.diffusers_models import tiny_sd
from runtime.backends.base import ExtraModel, JobContext, JobInputError
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.model_cache.ram_tier import HostRamTier
from tests.job_context import job_context

CPU = DiffusersOptions(compile="off", buckets=((64, 64),), host_ram_gib=0)
TOLERANCE = 2  # of 255 per channel: the backend's SDPA attention and channels_last against diffusers' defaults


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("loras")
    base = tiny_sd(root / "sd15--base@v1", seed=0)
    return {"base": base, "other": tiny_sd(root / "sd15--other@v1", seed=1),
            "sd15/pix": tiny_lora(base, root / "sd15--pix@v1", seed=1),
            "sd15/ink": tiny_lora(base, root / "sd15--ink@v1", seed=2)}


def _job(store: dict[str, Path], job_id: str, loras: list[dict[str, Any]] | None = None, **inputs: Any) -> JobContext:
    base = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}
    ctx = job_context(job_id, "sd15/base", "txt2img", None, **{**base, **inputs}, loras=loras or [])
    ctx.extra_models = {lora["model"]: ExtraModel(store[lora["model"]], "lora") for lora in loras or []}
    return ctx


def _backend(store: dict[str, Path], **kwargs: Any) -> DiffusersBackend:
    backend = DiffusersBackend(device="cpu", options=kwargs.pop("options", CPU), **kwargs)
    backend.load_model("sd15/base", store["base"])
    return backend


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _diff(a: bytes, b: bytes) -> int:
    return int(np.abs(_pixels(a) - _pixels(b)).max())


def _unet_hash(unet: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(unet.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _reference(store: dict[str, Path], lora: str | None, weight: float) -> np.ndarray:
    """diffusers' own: the pipeline from its folder, ``load_lora_weights``, ``set_adapters``, the same seed."""
    import diffusers
    import torch

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(store["base"]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    if lora is not None:
        pipe.load_lora_weights(str(store[lora]), adapter_name="reference")
        pipe.set_adapters(["reference"], adapter_weights=[weight])
    image = pipe("a cat", num_inference_steps=2, width=64, height=64, guidance_scale=7.0,
                 generator=torch.Generator().manual_seed(3)).images[0]
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_a_lora_job_matches_diffusers_own_load_lora_weights_and_the_base_is_untouched_after(store):
    backend = _backend(store)
    plain = backend.run(_job(store, "plain")).outputs[0].data
    base_hash = _unet_hash(backend.resident.eager_unet)
    with_lora = backend.run(_job(store, "pix", [{"model": "sd15/pix", "weight": 0.8}])).outputs[0].data
    assert np.abs(_pixels(with_lora) - _reference(store, "sd15/pix", 0.8)).max() <= TOLERANCE
    assert np.abs(_pixels(plain) - _reference(store, None, 1.0)).max() <= TOLERANCE
    assert _diff(with_lora, plain) > 10  # the LoRA changes the image
    assert backend.loads["disk"] == 1  # on the resident base: never reloaded
    assert backend.run(_job(store, "plain-again")).outputs[0].data == plain  # disabled: the base's own image
    backend.adapters.unload(backend.resident.pipe)
    assert _unet_hash(backend.resident.eager_unet) == base_hash
    assert not any("lora" in name for name in backend.resident.eager_unet.state_dict())


def test_swapping_loras_and_weights_on_the_resident_base_reads_each_file_once(store):
    backend = _backend(store)
    pix = backend.run(_job(store, "a", [{"model": "sd15/pix"}])).outputs[0].data
    ink = backend.run(_job(store, "b", [{"model": "sd15/ink"}])).outputs[0].data
    half = backend.run(_job(store, "c", [{"model": "sd15/pix", "weight": 0.5}])).outputs[0].data
    both = backend.run(_job(store, "d", [{"model": "sd15/pix"}, {"model": "sd15/ink", "weight": -0.5}])).outputs[0].data
    again = backend.run(_job(store, "e", [{"model": "sd15/pix"}])).outputs[0].data
    assert again == pix and len({pix, ink, half, both}) == 4
    assert backend.adapters.loads == {"disk": 2, "ram": 0} and backend.loads["disk"] == 1
    assert np.abs(_pixels(both) - _two_loras_reference(store)).max() <= TOLERANCE


def _two_loras_reference(store: dict[str, Path]) -> np.ndarray:
    import diffusers
    import torch

    pipe = diffusers.StableDiffusionPipeline.from_pretrained(str(store["base"]), local_files_only=True)
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(store["sd15/ink"]), adapter_name="ink")
    pipe.load_lora_weights(str(store["sd15/pix"]), adapter_name="pix")
    pipe.set_adapters(["ink", "pix"], adapter_weights=[-0.5, 1.0])
    image = pipe("a cat", num_inference_steps=2, width=64, height=64, guidance_scale=7.0,
                 generator=torch.Generator().manual_seed(3)).images[0]
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_jobs_with_different_loras_or_weights_never_share_a_pipeline_call(store):
    """Batching is on by default on CUDA fleets: a job's LoRA must not reach its batch mates' images."""
    backend = _backend(store)
    jobs = [_job(store, "p8", [{"model": "sd15/pix", "weight": 0.8}]), _job(store, "p5", [{"model": "sd15/pix",
                                                                                        "weight": 0.5}]),
            _job(store, "none"), _job(store, "p8b", [{"model": "sd15/pix", "weight": 0.8}], seed=4)]
    keys = [backend.batch_key(ctx) for ctx in jobs]
    assert keys[0] == keys[3] and len({keys[0], keys[1], keys[2]}) == 3
    outcomes = backend.run_batch(jobs)
    assert [o.metadata["batch_jobs"] for o in outcomes] == [2, 1, 1, 2]
    alone = [_backend(store).run(_job(store, "solo", [{"model": "sd15/pix", "weight": 0.5}])).outputs[0].data,
             _backend(store).run(_job(store, "solo")).outputs[0].data]
    assert _diff(outcomes[1].outputs[0].data, alone[0]) <= TOLERANCE
    assert _diff(outcomes[2].outputs[0].data, alone[1]) <= TOLERANCE


def test_recent_lora_weights_come_back_from_the_host_ram_tier_after_a_base_switch(store):
    tier = HostRamTier(64 * 2**20)
    backend = _backend(store, ram_tier=tier)
    first = backend.run(_job(store, "a", [{"model": "sd15/pix"}])).outputs[0].data
    backend.load_model("sd15/other", store["other"])
    backend.run(job_context("o", "sd15/other", "txt2img", None, prompt="a cat", steps=2, width=64, height=64, seed=3))
    assert not backend.adapters.loaded  # unloaded before the base changed
    backend.load_model("sd15/base", store["base"])
    ctx = _job(store, "b", [{"model": "sd15/pix"}])
    ctx.extra_models = {}  # the file is not even needed: the tier holds its tensors
    assert backend.run(ctx).outputs[0].data == first
    assert backend.adapters.loads == {"disk": 1, "ram": 1}
    assert "sd15/pix@lora" in set(tier.keys())


def test_a_lora_without_its_file_or_of_another_kind_is_an_input_error(store):
    backend = _backend(store)
    ctx = _job(store, "a", [{"model": "sd15/pix"}])
    ctx.extra_models = {}
    with pytest.raises(JobInputError, match="no local file"):
        backend.run(ctx)
    ctx = _job(store, "b", [{"model": "sd15/pix"}])
    ctx.extra_models = {"sd15/pix": ExtraModel(store["sd15/pix"], "checkpoint")}
    with pytest.raises(JobInputError, match="not a LoRA"):
        backend.run(ctx)
