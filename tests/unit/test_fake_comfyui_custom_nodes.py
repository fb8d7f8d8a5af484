"""The fake ComfyUI loads ``custom_nodes/*`` as ComfyUI 0.3.64's nodes.py does (tests/fakes/comfyui_custom_nodes.py):
pack folders and single files, ``.disabled`` and non-Python files skipped, a failing import logged and its nodes
left out of /object_info, a pack cannot replace a core node. The same log lines a real server wrote
(tests/fixtures/comfyui/startup_import_failed.log) are what the AMI build reads (runtime.node_catalog)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import httpx
import pytest

from runtime.node_catalog import from_object_info, import_failures, probe_name
from tests.fakes.comfyui_graph import NODES
from tests.fakes.fake_comfyui import FakeComfyUI

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "comfyui"
PACK = FIXTURES / "node_packs" / "genai_fleet_nodes"


@pytest.fixture
def comfy_root(tmp_path: Path) -> Path:
    nodes = tmp_path / "custom_nodes"
    shutil.copytree(PACK, nodes / "genai_fleet_nodes")
    (nodes / "single.py").write_text(
        "class One:\n    @classmethod\n    def INPUT_TYPES(cls):\n        return {'required': {'images': ('IMAGE',)}}\n"
        "    RETURN_TYPES = ()\n    OUTPUT_NODE = True\n    FUNCTION = 'f'\n\n"
        "class FakeKSampler:\n    @classmethod\n    def INPUT_TYPES(cls):\n        return {'required': {}}\n"
        "    RETURN_TYPES = ()\n\n"
        "NODE_CLASS_MAPPINGS = {'GenaiOne': One, 'KSampler': FakeKSampler}\n")
    (nodes / "broken").mkdir()
    (nodes / "broken" / "__init__.py").write_text("import no_such_module_41\nNODE_CLASS_MAPPINGS = {'Broken': 1}\n")
    (nodes / "off.py.disabled").write_text("NODE_CLASS_MAPPINGS = {'Disabled': object}\n")
    (nodes / "old.disabled").mkdir()
    (nodes / "old.disabled" / "__init__.py").write_text("NODE_CLASS_MAPPINGS = {'OldDisabled': object}\n")
    (nodes / "README.txt").write_text("not a pack\n")
    (nodes / "no_mappings.py").write_text("X = 1\n")
    return tmp_path


@pytest.fixture
def fake(comfy_root: Path, caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO, logger="comfyui")
    server = FakeComfyUI(comfy_root / "models" / "checkpoints", delay=0.01, root=comfy_root).start()
    yield server
    server.stop()


def test_object_info_lists_loaded_packs_only(fake):
    info = httpx.get(f"{fake.url}/object_info").json()
    assert {"GenaiFleetSolarize", "GenaiFleetStamp", "GenaiOne"} <= set(info)
    assert not {"Broken", "Disabled", "OldDisabled"} & set(info)
    assert info["GenaiFleetSolarize"]["python_module"] == "custom_nodes.genai_fleet_nodes"
    assert info["GenaiOne"]["python_module"] == "custom_nodes.single" and info["GenaiOne"]["output_node"] is True
    assert "python_module" not in info["KSampler"]  # the core KSampler stays: a pack cannot replace it


def test_failed_imports_are_logged_as_comfyui_logs_them(fake, caplog: pytest.LogCaptureFixture):
    failed = {Path(p.path).name: p.error for p in fake.custom_nodes.failed}
    assert set(failed) == {"broken", "no_mappings.py"}
    assert failed["broken"] == "No module named 'no_such_module_41'"
    found = import_failures("\n".join(r.getMessage() for r in caplog.get_records("setup")))  # logged at start
    assert {Path(p).name for p in found} == {"broken", "no_mappings.py"}
    assert found[str(fake.custom_nodes_dir / "broken")] == "No module named 'no_such_module_41'"


def test_a_real_servers_log_reads_the_same():
    text = (FIXTURES / "startup_import_failed.log").read_text()
    assert import_failures(text) == {"/tmp/comfy-41/custom_nodes/broken_pack": "No module named 'no_such_module_41'"}


def test_pack_nodes_run_and_missing_ones_are_invalid(fake):
    graph = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 1}},
             "2": {"class_type": "GenaiFleetStamp", "inputs": {"image": ["1", 0], "mode": "framed"}},
             "3": {"class_type": "GenaiOne", "inputs": {"images": ["2", 0]}}}
    assert httpx.post(f"{fake.url}/prompt", json={"prompt": graph}).status_code == 200
    graph["2"]["class_type"] = "Broken"
    answer = httpx.post(f"{fake.url}/prompt", json={"prompt": graph})
    assert answer.status_code == 400 and answer.json()["error"]["type"] == "invalid_prompt"
    assert "Broken" in answer.json()["error"]["message"]


def test_no_custom_nodes_folder_loads_nothing(tmp_path: Path):
    server = FakeComfyUI(tmp_path / "models" / "checkpoints", delay=0.01, root=tmp_path)
    assert server.custom_nodes.packs == [] and set(server.nodes) == set(NODES)


def test_probe_files_reveal_model_folders(fake, comfy_root: Path):
    for folder in ("checkpoints", "vae", "diffusion_models", "text_encoders"):
        (comfy_root / "models" / folder).mkdir(parents=True, exist_ok=True)
        (comfy_root / "models" / folder / probe_name(folder)).write_bytes(b"")
    catalog = from_object_info(httpx.get(f"{fake.url}/object_info").json())
    assert catalog.nodes["CheckpointLoaderSimple"] == {"ckpt_name": "checkpoints"}
    assert catalog.nodes["UNETLoader"] == {"unet_name": "diffusion_models"}
    assert catalog.nodes["GenaiFleetStamp"] == {} and "GenaiOne" in catalog.nodes
