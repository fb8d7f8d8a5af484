"""Local mode with the fake ComfyUI and a custom node pack (issue 41): the fake loads custom_nodes/* as ComfyUI does,
its /object_info (read with a probe file in each model folder, as the AMI build reads it) becomes the node catalog,
published where make ami puts one and named to the API. A comfyui-workflow naming a node class or a model file the
fleet lacks is refused with 422 naming each node, before anything is queued; one using the pack's nodes runs
through the agent and the fake and ends with an image."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import httpx
import pytest

from runtime.node_catalog import MODEL_FOLDERS, from_object_info, probe_name
from tests.fakes.fake_comfyui import FakeComfyUI

PACK = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "node_packs" / "genai_fleet_nodes"


@pytest.fixture
def comfy(tmp_path: Path):
    root = tmp_path / "comfy"
    shutil.copytree(PACK, root / "custom_nodes" / PACK.name)
    fake = FakeComfyUI(root / "models" / "checkpoints", delay=0.1, root=root).start()
    yield fake
    fake.stop()


def record_catalog(fake: FakeComfyUI, out: Path) -> Path:
    """What runtime/node_catalog_record.py does at AMI build, against the running fake: probes in, read, probes out."""
    probes = []
    for folder in MODEL_FOLDERS:
        path = fake.models_dir.parent / folder / probe_name(folder)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
        probes.append(path)
    catalog = from_object_info(httpx.get(f"{fake.url}/object_info", timeout=10).json(), comfyui_version="fake")
    for path in probes:
        path.unlink()
    out.write_text(catalog.to_json())
    return out


def _post(platform, body):
    return platform.ledger.http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})


def test_workflows_are_checked_against_the_fleets_catalog_and_the_pack_runs(start_platform, tmp_path, comfy):
    checkpoint = tmp_path / "sd15.safetensors"
    checkpoint.write_bytes(b"weights " * 64)
    platform = start_platform(backend="comfyui", backend_url=comfy.url, workers=1,
                              models={"sd15": str(checkpoint)}, backend_model_dirs=[str(comfy.models_dir)],
                              node_catalog=str(record_catalog(comfy, tmp_path / "catalog.json")))
    image = {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 7}}
    bad = {"1": image,
           "2": {"class_type": "IPAdapterApply", "inputs": {"image": ["1", 0]}},
           "3": {"class_type": "LoraLoader", "inputs": {"model": ["1", 0], "clip": ["1", 0], "strength_model": 1.0,
                                                       "strength_clip": 1.0, "lora_name": "missing.safetensors"}},
           "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    refused = _post(platform, {"model": "sd15", "task": "comfyui-workflow", "inputs": {"workflow": bad}})
    assert refused.status_code == 422, refused.text
    errors = refused.json()["errors"]
    assert [(e["node"], e["rule"]) for e in errors] == [("2", "unknown-node-class"), ("3", "unknown-model-file")]
    assert platform.ledger.http.get("/v1/jobs").json()["jobs"] == []  # nothing was written

    good = {"1": image,
            "2": {"class_type": "GenaiFleetSolarize", "inputs": {"image": ["1", 0], "threshold": 0.4}},
            "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "pack"}}}
    answer = _post(platform, {"model": "sd15", "task": "comfyui-workflow", "inputs": {"workflow": good}})
    assert answer.status_code in (200, 202), answer.text
    assert "Warning" not in answer.headers
    job_id = answer.json()["id"]
    view = platform.ledger.wait_final([job_id], timeout=90)[job_id]
    assert view["status"] == "succeeded", view
    sent = next(p["prompt"] for p in comfy.prompts if p["prompt_id"].startswith(f"{job_id}."))
    assert sent["2"]["class_type"] == "GenaiFleetSolarize"
