"""The worker runs what the API let through (issue 41, point 3): the files a comfyui-workflow graph's loader nodes
name are mapped to model store entries with the image's node catalog and the manifest (the mapping the API checked
at submit), fetched through the model cache as the job's extra model files (lane C's seam), and linked by the
ComfyUI backend into its kind's folder under the name the graph gives, so ComfyUI's own validation finds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.backends.base import ExtraModel, JobInputError
from runtime.backends.comfyui import ComfyUIBackend, default_workflow
from runtime.jobs.extra_models import extra_model_ids
from runtime.jobs.schema import JobSpec
from runtime.model_store.layout import artifact_key
from runtime.model_store.manifest import ManifestStore, ModelEntry, ModelFile
from runtime.node_catalog import NodeCatalog
from runtime.worker.workflow_models import WorkflowModelMap, load_workflow_models
from runtime.workflow_files import ManifestFiles
from tests.fakes.fake_comfyui import FakeComfyUI
from tests.job_context import job_context, job_spec

CATALOG_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "node_catalog_0.3.64.json"
CATALOG = NodeCatalog.from_json(CATALOG_FILE.read_text())


def entry(model_id: str, kind: str, path: str) -> ModelEntry:
    return ModelEntry(model_id=model_id, kind=kind, version="v1", uploaded_at="2026-12-07T00:00:00Z",
                      files=(ModelFile(path, artifact_key(kind, model_id, "v1", path), 1, "0" * 64),))


MODELS = {e.model_id: e for e in (entry("sdxl/detail", "lora", "detail.safetensors"),
                                  entry("sdxl/vae-fix", "vae", "sdxl_vae.safetensors"),
                                  entry("sdxl/base", "checkpoint", "sd_xl_base.safetensors"))}


def workflow_spec(graph: dict) -> JobSpec:
    return JobSpec.parse({"model": "sdxl/base", "task": "comfyui-workflow", "inputs": {"workflow": graph}})


GRAPH = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "whatever.safetensors"}},
    "5": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "lora_name": "detail.safetensors",
                                                  "strength_model": 1.0, "strength_clip": 1.0}},
    "6": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    "7": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
    "8": {"class_type": "VAELoader", "inputs": {"vae_name": "not-in-store.safetensors"}},
}


def test_loader_files_become_the_jobs_extra_model_ids():
    loads = []
    mapping = WorkflowModelMap(CATALOG, lambda: loads.append(1) or ManifestFiles(MODELS))
    spec = workflow_spec(GRAPH)
    assert extra_model_ids(spec, mapping) == ["sdxl/detail", "sdxl/vae-fix"]  # once each; unknown: left to ComfyUI
    assert extra_model_ids(spec) == []  # a worker without a catalog maps nothing (lane C's behaviour)
    extra_model_ids(spec, mapping)
    assert loads == [1]  # the manifest is cached between jobs


def test_the_map_is_built_from_the_images_catalog_file_and_the_store(aws_clients, tmp_path: Path):
    s3 = aws_clients("s3")
    s3.create_bucket(Bucket="models-wf41")
    store = ManifestStore(s3, "models-wf41")
    for e in MODELS.values():
        store.register(e)
    assert load_workflow_models(tmp_path / "absent.json", s3, "models-wf41") is None
    (tmp_path / "bad.json").write_text("{}")
    assert load_workflow_models(tmp_path / "bad.json", s3, "models-wf41") is None
    mapping = load_workflow_models(CATALOG_FILE, s3, "models-wf41")
    assert mapping is not None and mapping(GRAPH) == ["sdxl/detail", "sdxl/vae-fix"]


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.05, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


def test_the_backend_links_each_fetched_file_where_the_loader_looks(comfy, tmp_path: Path):
    """The fake validates VAELoader's vae_name against models/vae as ComfyUI does: without the link the prompt is
    refused (value_not_in_list), with it the graph runs."""
    checkpoint = tmp_path / "cache" / "sdxl--base@v1" / "sd_xl_base.safetensors"
    vae = tmp_path / "cache" / "sdxl--vae-fix@v1" / "sdxl_vae.safetensors"
    for path in (checkpoint, vae):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"weights")
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(comfy.models_dir), poll_seconds=0.05)
    backend.load_model("sdxl/base", checkpoint)
    workflow = default_workflow(job_spec(prompt="x").inputs, 1, "other.safetensors", None)
    workflow["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}}
    workflow["8"]["inputs"]["vae"] = ["20", 0]
    job = job_context("j_wf41", "sdxl/base", "comfyui-workflow", workflow=workflow, seed=3)
    job.extra_models = {"sdxl/vae-fix": ExtraModel(vae, "vae")}
    backend.run(job)
    assert (comfy.models_dir.parent / "vae" / "sdxl_vae.safetensors").resolve() == vae
    sent = comfy.prompts[-1]["prompt"]
    assert sent["20"]["inputs"]["vae_name"] == "sdxl_vae.safetensors"


def test_without_the_file_comfyui_refuses_the_graph_naming_the_node(comfy, tmp_path: Path):
    checkpoint = tmp_path / "sd_xl_base.safetensors"
    checkpoint.write_bytes(b"weights")
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(comfy.models_dir), poll_seconds=0.05)
    backend.load_model("sdxl/base", checkpoint)
    workflow = default_workflow(job_spec(prompt="x").inputs, 1, "other.safetensors", None)
    workflow["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}}
    workflow["8"]["inputs"]["vae"] = ["20", 0]
    job = job_context("j_wf41b", "sdxl/base", "comfyui-workflow", workflow=workflow, seed=3)
    with pytest.raises(JobInputError, match="20"):
        backend.run(job)


def test_a_folder_entry_is_refused_for_a_loader(comfy, tmp_path: Path):
    folder = tmp_path / "multi"
    folder.mkdir()
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(comfy.models_dir), poll_seconds=0.05)
    job = job_context("j_wf41c", "sdxl/base", "comfyui-workflow",
                      workflow={"1": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x"}}}, seed=3)
    job.extra_models = {"sdxl/multi": ExtraModel(folder, "vae")}
    with pytest.raises(JobInputError, match="its cache entry is a folder"):
        backend.run(job)
    assert json.dumps(sorted(p.name for p in comfy.models_dir.parent.rglob("*") if p.is_symlink())) == "[]"
