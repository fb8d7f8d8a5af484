"""LoRAs on ComfyUI (issue 40): the default graph gets a LoraLoader chain naming the files the agent fetched and
linked into ``models/loras/``; the fake ComfyUI checks each ``lora_name`` against that folder as the real server
does (nodes.py ``LoraLoader``: ``folder_paths.get_filename_list("loras")``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.backends.base import ExtraModel, JobInputError
from runtime.backends.comfyui_extra import link_extra_model, with_loras
from tests.job_context import job_context
from tests.unit.test_backends_comfyui import backend_for, comfy, model_file  # noqa: F401 - fixtures


def _lora(tmp_path: Path, model_id: str) -> Path:
    path = tmp_path / "cache" / f"{model_id.replace('/', '--')}@v1" / "adapter.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"lora " + model_id.encode())
    return path


def test_the_default_graph_chains_a_lora_loader_per_lora_with_the_linked_files(comfy, model_file, tmp_path):  # noqa: F811
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    ctx = job_context("j1", "sd15/base", "txt2img", prompt="a cat", seed=7,
                      loras=[{"model": "sd15/pix", "weight": 0.8}, {"model": "sd15/ink", "weight": -0.5}])
    ctx.extra_models = {m: ExtraModel(_lora(tmp_path, m), "lora") for m in ("sd15/pix", "sd15/ink")}
    result = backend.run(ctx)
    assert result.outputs and result.outputs[0].data.startswith(b"\x89PNG")
    graph = comfy.prompts[0]["prompt"]
    loaders = [graph["lora0"], graph["lora1"]]
    assert [n["class_type"] for n in loaders] == ["LoraLoader", "LoraLoader"]
    assert [(n["inputs"]["lora_name"], n["inputs"]["strength_model"], n["inputs"]["strength_clip"])
            for n in loaders] == [("sd15--pix.safetensors", 0.8, 0.8), ("sd15--ink.safetensors", -0.5, -0.5)]
    assert loaders[0]["inputs"]["model"] == ["4", 0] and loaders[0]["inputs"]["clip"] == ["4", 1]
    assert loaders[1]["inputs"]["model"] == ["lora0", 0] and loaders[1]["inputs"]["clip"] == ["lora0", 1]
    assert graph["3"]["inputs"]["model"] == ["lora1", 0]
    assert graph["6"]["inputs"]["clip"] == graph["7"]["inputs"]["clip"] == ["lora1", 1]
    loras = comfy.models_dir.parent / "loras"
    assert (loras / "sd15--pix.safetensors").resolve() == ctx.extra_models["sd15/pix"].path.resolve()


def test_a_lora_name_not_in_the_loras_folder_is_refused_by_the_fake_as_by_comfyui(comfy, model_file):  # noqa: F811
    """The fake is as strict as the server: a LoraLoader naming a file not linked is ``value_not_in_list``."""
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    workflow = with_loras({"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd15.safetensors"}},
                           "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "t"}},
                           "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
                           "3": {"class_type": "KSampler", "inputs": {
                               "model": ["4", 0], "seed": 1, "steps": 1, "cfg": 1.0, "sampler_name": "euler",
                               "scheduler": "normal", "positive": ["6", 0], "negative": ["6", 0],
                               "latent_image": ["5", 0], "denoise": 1.0}},
                           "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["4", 1]}},
                           "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64,
                                                                             "batch_size": 1}}},
                          [("missing.safetensors", 1.0)])
    ctx = job_context("j2", "sd15", "comfyui-workflow", workflow=workflow, seed=1)
    with pytest.raises(JobInputError, match="lora_name"):
        backend.run(ctx)


def test_a_lora_without_its_file_or_of_another_kind_is_an_input_error(comfy, model_file, tmp_path):  # noqa: F811
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    ctx = job_context("j3", "sd15/base", "txt2img", prompt="a cat", seed=7, loras=[{"model": "sd15/pix"}])
    with pytest.raises(JobInputError, match="no local file"):
        backend.run(ctx)
    ctx.extra_models = {"sd15/pix": ExtraModel(_lora(tmp_path, "sd15/pix"), "vae")}
    with pytest.raises(JobInputError, match="not a LoRA"):
        backend.run(ctx)
    assert comfy.prompts == []


def test_files_link_into_their_kinds_folder_and_a_relink_follows_a_new_version(tmp_path):
    root = tmp_path / "models"
    first = _lora(tmp_path / "a", "sd15/pix")
    assert link_extra_model(root, "sd15/pix", ExtraModel(first, "lora")) == "sd15--pix.safetensors"
    second = _lora(tmp_path / "b", "sd15/pix")
    link_extra_model(root, "sd15/pix", ExtraModel(second, "lora"))
    assert (root / "loras" / "sd15--pix.safetensors").resolve() == second.resolve()
    assert link_extra_model(root, "vae-fix", ExtraModel(first, "vae")) == "vae-fix.safetensors"
    assert (root / "vae" / "vae-fix.safetensors").is_symlink()
    with pytest.raises(JobInputError, match="no model folder"):
        link_extra_model(root, "x", ExtraModel(first, "workflow"))
