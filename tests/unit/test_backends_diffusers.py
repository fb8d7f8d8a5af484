"""The diffusers backend end to end on the CPU: tiny random-weight pipelines built from configs, saved in the
model store's layout and loaded through the backend's real diffusers code (no injected pipelines here)."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from bench.diffusers_single_file import write_single_file
from runtime.backends.base import BackendError, JobContext, JobInputError, JobInterrupted
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_options import DiffusersOptions, OptionsError
from tests.job_context import job_context, png

CPU = DiffusersOptions(compile="off", buckets=((64, 64),))


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {"a": tiny_sd(root / "a@v1", seed=0), "b": tiny_sd(root / "b@v1", seed=1)}


def _job(job_id: str, task: str = "txt2img", images: dict[str, bytes] | None = None, **inputs: Any) -> JobContext:
    base = {"prompt": "a cat", "steps": 2, "width": 64, "height": 64, "seed": 3}
    return job_context(job_id, "a", task, images, **{**base, **inputs})


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def _backend(**kwargs: Any) -> DiffusersBackend:
    return DiffusersBackend(device="cpu", options=kwargs.pop("options", CPU), **kwargs)


def test_folder_model_txt2img_is_reproducible_per_seed(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    first = backend.run(_job("j1"))
    again = backend.run(_job("j2"))
    other = backend.run(_job("j3", seed=4))
    assert type(backend.resident.pipe).__name__ == "StableDiffusionPipeline" and backend.loads["disk"] == 1
    assert Image.open(io.BytesIO(first.outputs[0].data)).size == (64, 64)
    assert first.outputs[0].data == again.outputs[0].data != other.outputs[0].data
    assert first.metadata["seed"] == 3 and first.metadata["compiled"] is False
    two = backend.run(_job("j4", num_outputs=2))
    assert [o.name for o in two.outputs] == ["image-0.png", "image-1.png"]
    # Image 0 of a job is drawn from seed + 0 however many it asks (up to batched-kernel rounding).
    assert np.abs(_pixels(two.outputs[0].data) - _pixels(first.outputs[0].data)).max() <= 2


def test_img2img_uses_the_input_image_and_the_same_weights(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    image = {"image": png(64, 64)}
    result = backend.run(_job("j1", "img2img", image, strength=0.5, steps=4))
    assert result.outputs[0].data == backend.run(_job("j2", "img2img", image, strength=0.5, steps=4)).outputs[0].data
    with pytest.raises(JobInputError, match="no denoising step"):  # diffusers runs int(steps x strength) steps
        backend.run(_job("j3", "img2img", image, strength=0.2, steps=4))
    img2img = backend.resident.by_task["img2img"]
    assert type(img2img).__name__ == "StableDiffusionImg2ImgPipeline"
    assert img2img.vae is backend.resident.pipe.vae  # from_pipe: no second copy of the weights
    assert backend.loads["disk"] == 1


def test_cancellation_is_observed_between_steps(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    backend.run(_job("warm"))
    unet = backend.resident.eager_unet
    ctx = _job("j1", steps=10)
    steps: list[int] = []
    original = unet.forward

    def forward(*args: Any, **kwargs: Any) -> Any:  # one UNet call per denoising step
        steps.append(1)
        ctx.cancel.set()  # the cancel arrives while step 0 runs
        return original(*args, **kwargs)

    unet.forward = forward
    with pytest.raises(JobInterrupted, match="step 0"):
        backend.run(ctx)
    assert len(steps) == 1


def test_batch_gives_each_job_its_own_images_and_fails_only_bad_inputs(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    solo = [backend.run(_job("s1", seed=1, prompt="a cat")), backend.run(_job("s2", seed=2, prompt="ca t"))]
    outcomes = backend.run_batch([_job("b1", seed=1, prompt="a cat"), _job("bad", "img2img", {"image": b"not a png"}),
                                  _job("b2", seed=2, prompt="ca t"), _job("b3", steps=3)])
    assert isinstance(outcomes[1], JobInputError) and "inputs.image is not an image" in str(outcomes[1])
    assert [outcomes[i].metadata["batch_jobs"] for i in (0, 2, 3)] == [2, 2, 1]
    for batched, alone in zip((outcomes[0], outcomes[2]), solo, strict=True):
        # Same seed and prompt give the same image as the job alone, up to batched-kernel rounding.
        assert np.abs(_pixels(batched.outputs[0].data) - _pixels(alone.outputs[0].data)).max() <= 2
    assert np.abs(_pixels(outcomes[0].outputs[0].data) - _pixels(outcomes[2].outputs[0].data)).max() > 10


def test_a_cancelled_member_of_a_batch_does_not_stop_the_others(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    keep, drop = _job("keep"), _job("drop", seed=9)
    drop.cancel.set()
    kept, dropped = backend.run_batch([keep, drop])
    assert isinstance(dropped, JobInterrupted) and kept.outputs  # cancelled before submission: not run at all
    assert kept.metadata["batch_jobs"] == 1


class BoundedTier:
    """A stand-in for issue 18's host-RAM tier with a byte bound (what the backend needs of it)."""

    def __init__(self, limit: int) -> None:
        self.limit, self.items, self.puts = limit, {}, []

    def get(self, key: str) -> Mapping[str, Any] | None:
        return self.items.get(key, (None, 0))[0]

    def put(self, key: str, tensors: Mapping[str, Any], nbytes: int) -> bool:
        self.puts.append((key, nbytes))
        if nbytes > self.limit:
            return False
        self.items[key] = (tensors, nbytes)
        return True

    def keys(self) -> list[str]:
        return list(self.items)


def test_switching_models_goes_through_the_ram_tier_and_back_to_the_same_images(models):
    tier = BoundedTier(limit=1 << 30)
    backend = _backend(ram_tier=tier)
    backend.load_model("a", models["a"])
    a1 = backend.run(_job("a1")).outputs[0].data
    backend.load_model("b", models["b"])
    b1 = backend.run(_job("b1")).outputs[0].data
    backend.load_model("a", models["a"])
    a2 = backend.run(_job("a2")).outputs[0].data
    assert a1 == a2 != b1
    assert backend.loads == {"disk": 2, "ram": 1}  # a came back from host RAM, not from disk
    assert [key.split("@")[0] for key, _ in tier.puts] == ["a", "b"] and all(n > 0 for _, n in tier.puts)


def test_a_model_that_came_from_the_tier_is_not_copied_back_to_it(models):
    tier = BoundedTier(limit=1 << 30)
    backend = _backend(ram_tier=tier)
    images = {}
    for step, model in enumerate(("a", "b", "a", "b", "a")):
        backend.load_model(model, models[model])
        images.setdefault(model, set()).add(backend.run(_job(f"{model}{step}")).outputs[0].data)
    assert all(len(v) == 1 for v in images.values()) and images["a"] != images["b"]
    assert backend.loads == {"disk": 2, "ram": 3}
    # a and b are copied to host memory once each, when first switched away from; never again
    assert [key.split("@")[0] for key, _ in tier.puts] == ["a", "b"]


def test_snapshot_is_one_aligned_buffer_that_keeps_each_tensors_layout():
    import torch

    from runtime.backends.diffusers_ram import ALIGN, snapshot

    class Pipe:
        unet = torch.nn.Conv2d(3, 5, 3).to(memory_format=torch.channels_last)
        vae = torch.nn.Linear(7, 3).to(torch.float16)

    tensors, total = snapshot(Pipe(), pin=False)
    weights = {f"unet.{k}": v for k, v in Pipe.unet.state_dict().items()}
    weights |= {f"vae.{k}": v for k, v in Pipe.vae.state_dict().items()}
    assert set(tensors) == set(weights)
    for key, value in weights.items():
        host = tensors[key]
        assert torch.equal(host, value) and host.dtype == value.dtype and host.stride() == value.stride()
        assert host.data_ptr() % ALIGN == 0 and host.data_ptr() != value.data_ptr()
    storages = {t.untyped_storage().data_ptr() for t in tensors.values()}
    assert len(storages) == 1  # one allocation (one page-locked allocation on CUDA), not one per tensor
    assert total >= sum(v.numel() * v.element_size() for v in weights.values())


def test_a_tier_that_is_full_sends_the_switch_to_disk(models):
    backend = _backend(ram_tier=BoundedTier(limit=1024))  # smaller than any tiny model: refuses everything
    for model in ("a", "b", "a"):
        backend.load_model(model, models[model])
        backend.run(_job(model))
    assert backend.loads == {"disk": 3, "ram": 0}


def test_single_file_checkpoint_loads_through_from_single_file_with_the_same_weights(models, tmp_path: Path):
    from safetensors import safe_open

    checkpoint = write_single_file(models["a"], tmp_path / "ckpt" / "model.safetensors")
    with safe_open(str(checkpoint), "pt") as f:
        keys = set(f.keys())
    # The original (LDM) layout real single-file checkpoints use, not diffusers' own names.
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight" in keys
    folder, single = _backend(), _backend()
    folder.load_model("a", models["a"])
    single.load_model("a-single", checkpoint)
    assert single.run(_job("j1")).outputs[0].data == folder.run(_job("j1")).outputs[0].data
    assert type(single.resident.pipe).__name__ == "StableDiffusionPipeline"


def test_single_file_checkpoint_without_configs_says_what_to_upload(tmp_path: Path):
    import torch
    from safetensors.torch import save_file

    checkpoint = tmp_path / "model.safetensors"
    save_file({"x": torch.zeros(1)}, str(checkpoint))
    backend = _backend()
    backend.load_model("c", checkpoint)
    with pytest.raises(JobInputError, match=r"model_index\.json"):
        backend.run(_job("j1"))
    backend.load_model("d", tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(JobInputError, match="not a diffusers folder"):
        backend.run(_job("j2"))


def test_warm_up_runs_every_bucket_before_the_first_job(models):
    options = DiffusersOptions(compile="off", buckets=((64, 64), (64, 128)), batch_sizes=(1, 2))
    backend = _backend(options=options)
    report = backend.warm_up("a", models["a"])
    assert report["buckets"] == 2 and report["batch_sizes"] == [1, 2] and report["compiled"] is False
    assert backend.loads["disk"] == 1 and backend.resident.model_id == "a"


def test_options_name_the_key_and_the_allowed_values():
    assert DiffusersOptions.from_mapping({"buckets": ["1024x1024", "832x1216"]}).buckets == ((1024, 1024), (832, 1216))
    with pytest.raises(OptionsError, match=r"diffusers\.dtype: 'fp8' is not one of auto, float16"):
        DiffusersOptions.from_mapping({"dtype": "fp8"})
    with pytest.raises(OptionsError, match=r"diffusers\.buckets: '1000x7' needs both sides multiples of 8"):
        DiffusersOptions.from_mapping({"buckets": ["1000x7"]})
    with pytest.raises(OptionsError, match="unknown key"):
        DiffusersOptions.from_mapping({"bucket": []})
    with pytest.raises(OptionsError, match=r"diffusers\.cold_compile: 'always' is not one of skip, compile"):
        DiffusersOptions.from_mapping({"cold_compile": "always"})
    assert DiffusersOptions().cold_compile == "skip"  # a cold compile is never paid at boot unless asked for
    with pytest.raises(OptionsError, match="max_batch"):
        DiffusersOptions.from_mapping({"max_batch": 2, "batch_sizes": [4]})
    assert json.dumps(DiffusersOptions().buckets_for("sdxl")[0]) == "[1024, 1024]"


def test_agent_config_diffusers_block_reaches_the_backend_and_typos_fail_at_boot():
    from runtime import agent_config

    doc = {"stack": "dev", "region": "us-east-1", "queue": {"kind": "sqs", "url": "http://q"}, "job_table": "jobs",
           "outputs": {"bucket": "b", "cdn_base_url": "https://cdn"}, "backend": "diffusers",
           "diffusers": {"dtype": "bfloat16", "buckets": ["1024x1024"], "batch_sizes": [1, 4]}}
    backend = DiffusersBackend(agent_config.parse(doc))
    assert backend.options.dtype == "bfloat16" and backend.options.buckets == ((1024, 1024),)
    assert backend.options.batch_sizes == (1, 4)
    with pytest.raises(agent_config.AgentConfigError, match=r"diffusers\.compile_mode: 'fast' is not one of"):
        agent_config.parse({**doc, "diffusers": {"compile_mode": "fast"}})


def test_the_device_comes_from_the_agent_config_and_only_cuda_or_cpu_is_taken():
    """Local mode runs the backend from an agent config on a CPU-only host: ``diffusers.device: cpu``."""
    from runtime import agent_config

    doc = {"stack": "local", "region": "us-east-1", "queue": {"kind": "sqs", "url": "http://q"}, "job_table": "jobs",
           "outputs": {"bucket": "b", "cdn_base_url": "https://cdn"}, "backend": "diffusers"}
    assert DiffusersBackend(agent_config.parse(doc)).device == "cuda"  # the fleets' default
    backend = DiffusersBackend(agent_config.parse({**doc, "diffusers": {"device": "cpu"}}))
    assert backend.device == "cpu" and backend.options.compiles("cpu") is False
    assert DiffusersBackend(agent_config.parse(doc), device="cpu").device == "cpu"  # a test's own choice wins
    with pytest.raises(agent_config.AgentConfigError, match=r"diffusers\.device: 'mps' is not one of cuda, cpu"):
        agent_config.parse({**doc, "diffusers": {"device": "mps"}})


def test_the_job_scheduler_is_a_fresh_one_per_call_and_unknown_names_are_input_errors(models):
    backend = _backend()
    backend.load_model("a", models["a"])
    default = backend.run(_job("j1", steps=3)).outputs[0].data
    karras = backend.run(_job("j2", steps=3, scheduler="DPM++ 2M Karras"))
    assert type(backend.resident.pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert backend.resident.pipe.scheduler.config.use_karras_sigmas is True
    assert karras.outputs[0].data != default
    assert backend.run(_job("j3", steps=3)).outputs[0].data == default  # the model's own scheduler again
    with pytest.raises(JobInputError, match=r"inputs\.scheduler 'warp drive' is not one of: ddim"):
        backend.run(_job("j4", scheduler="warp drive"))
    outcomes = backend.run_batch([_job("b1", steps=3), _job("b2", steps=3, scheduler="DDIMScheduler")])
    assert [o.metadata["batch_jobs"] for o in outcomes] == [1, 1]  # another scheduler is another call


def test_the_real_host_ram_tier_serves_a_switch_back_and_keeps_its_bound(models):
    from runtime.model_cache.ram_tier import HostRamTier

    events: list[dict[str, float]] = []
    backend = _backend(options=DiffusersOptions(compile="off", buckets=((64, 64),), host_ram_gib=1.0))
    assert isinstance(backend.ram_tier, HostRamTier) and backend.ram_tier.max_bytes == 2**30
    backend.ram_tier.observe = lambda values, _props: events.append(values)
    for model in ("a", "b", "a"):
        backend.load_model(model, models[model])
        backend.run(_job(model))
    assert backend.loads == {"disk": 2, "ram": 1}
    kept = backend.ram_tier.keys()
    assert sorted(key.split("@")[0] for key in kept) == ["a", "b"]
    assert 0 < backend.ram_tier.used_bytes() <= backend.ram_tier.max_bytes
    assert any(values.get("ModelRamHits") for values in events)

    off = _backend(options=DiffusersOptions(compile="off", buckets=((64, 64),), host_ram_gib=0))
    assert off.ram_tier is None
    for model in ("a", "b", "a"):
        off.load_model(model, models[model])
        off.run(_job(model))
    assert off.loads == {"disk": 3, "ram": 0}


def test_host_ram_bound_is_validated_with_the_key_named():
    with pytest.raises(OptionsError, match=r"diffusers\.host_ram_gib"):
        DiffusersOptions.from_mapping({"host_ram_gib": -1})
    auto = DiffusersOptions.from_mapping({})
    assert 0 < auto.host_ram_bytes() < os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def test_batching_is_on_by_default_only_on_cuda_and_within_the_compiled_sizes():
    from runtime.backends.diffusers import Resident

    def backend(device: str, **options: Any) -> DiffusersBackend:
        return DiffusersBackend(device=device, options=DiffusersOptions(host_ram_gib=0, **options))

    assert backend("cpu").batch_default_jobs() == 1  # no gain measured on CPUs
    assert backend("cuda", compile="off").batch_default_jobs() == 4  # eager: up to max_batch (H100: 1.89x at 4)
    assert backend("cuda").batch_default_jobs() == 1  # compiled for batch 1 only: a batch would run eager
    assert backend("cuda", batch_sizes=(1, 2, 4)).batch_default_jobs() == 4
    skipped = backend("cuda")
    skipped.resident = Resident("a", object(), "arch", object(), cold_compile_skipped=True)
    assert skipped.batch_default_jobs() == 4  # serving eager after skipping a cold compile: batches pay


def test_the_time_limit_is_observed_between_steps_from_when_the_call_starts(models):
    """Issue 34: the in-process backend ends a call past the job's time limit at the next step (a wedged CUDA call
    that never reaches a step is the health probe's: the watchdog restarts the agent)."""
    backend = _backend()
    backend.load_model("a", models["a"])
    backend.run(_job("warm"))
    unet = backend.resident.eager_unet
    ctx = _job("j1", steps=10)
    ctx.time_limit_s = 3600.0
    steps: list[int] = []
    original = unet.forward

    def forward(*args: Any, **kwargs: Any) -> Any:
        steps.append(1)
        ctx.deadline = 0.0  # the limit runs out while step 0 runs
        return original(*args, **kwargs)

    unet.forward = forward
    with pytest.raises(BackendError, match="time limit at step 0"):
        backend.run(ctx)
    assert len(steps) == 1 and ctx.executing_since is not None
