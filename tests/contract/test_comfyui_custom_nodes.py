"""ComfyUI contract, custom nodes: a pack in ``custom_nodes/`` is listed by /object_info as nodes.py
``load_custom_node`` and server.py ``node_info`` write it, runs like a core node, and the node catalog the AMI
build records (runtime/node_catalog.py) is read from that /object_info. Against a real server copy
tests/fixtures/comfyui/node_packs/genai_fleet_nodes into its custom_nodes/ and restart it (else: skipped)."""

from __future__ import annotations

import pytest

from runtime.node_catalog import from_object_info
from tests.contract.comfy_client import new_id

PACK_NODES = ("GenaiFleetSolarize", "GenaiFleetStamp")


@pytest.fixture
def object_info(comfy):
    info = comfy.client.http.get("/object_info").json()
    if comfy.real and "GenaiFleetSolarize" not in info:
        pytest.skip("copy tests/fixtures/comfyui/node_packs/genai_fleet_nodes into ComfyUI's custom_nodes/ first")
    return info


def test_pack_nodes_are_listed_as_node_info_writes_them(object_info):
    for name in PACK_NODES:
        info = object_info[name]
        assert info["name"] == name and info["python_module"] == "custom_nodes.genai_fleet_nodes"
        assert info["category"] == "genai-fleet" and info["output_node"] is False
        assert list(info["output"]) == ["IMAGE"] and list(info["output_name"]) == ["IMAGE"]
    assert object_info["GenaiFleetSolarize"]["display_name"] == "Solarize (genai-fleet)"
    assert object_info["GenaiFleetStamp"]["input"]["required"]["mode"][0] == ["plain", "framed"]
    assert object_info["GenaiFleetStamp"]["input_order"] == {"required": ["image", "mode"]}


def test_one_class_is_served_alone(comfy, object_info):
    answer = comfy.client.http.get("/object_info/GenaiFleetStamp").json()
    assert list(answer) == ["GenaiFleetStamp"]
    assert comfy.client.http.get("/object_info/NoSuchNodeClass").json() == {}


def test_a_workflow_with_pack_nodes_runs(comfy, object_info):
    workflow = comfy.workflow("contract-pack")
    workflow["2"] = {"class_type": "GenaiFleetSolarize", "inputs": {"image": ["1", 0], "threshold": 0.5}}
    prompt_id = new_id("pack")
    answer = comfy.client.submit(workflow, prompt_id)
    assert answer.status_code == 200, answer.text
    entry = comfy.client.wait_history(prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert entry["outputs"]["3"]["images"][0]["filename"].startswith("contract-pack_")


def test_a_pack_combo_input_is_validated(comfy, object_info):
    workflow = comfy.workflow()
    workflow["2"] = {"class_type": "GenaiFleetStamp", "inputs": {"image": ["1", 0], "mode": "sparkly"}}
    answer = comfy.client.submit(workflow, new_id("combo"))
    assert answer.status_code == 400
    errors = answer.json()["node_errors"]["2"]["errors"]
    assert errors[0]["type"] == "value_not_in_list" and "sparkly" in errors[0]["details"]


def test_the_catalog_records_pack_nodes_and_core_loaders(object_info):
    catalog = from_object_info(object_info)
    assert set(PACK_NODES) <= set(catalog.nodes) and catalog.nodes["GenaiFleetSolarize"] == {}
    for core in ("CheckpointLoaderSimple", "KSampler", "SaveImage", "EmptyImage"):
        assert core in catalog.nodes
