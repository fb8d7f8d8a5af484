"""comfyui-workflow jobs are checked at submit (issue 41, point 3): node classes against the node catalog of the
fleet's image (here the catalog recorded from a real ComfyUI 0.3.64 with the fixture pack,
tests/fixtures/comfyui/node_catalog_0.3.64.json), loader files against the model store manifest. A graph naming
a class or file the fleet lacks is refused with 422 naming each node id, before anything is written or queued; a
graph that cannot be judged (no catalog configured or published) is accepted with a ``Warning`` header."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.environment import ApiConfig
from runtime.api.workflow_check import WorkflowChecker, parse_s3_uri, s3_catalog, s3_manifest_files
from runtime.jobs.store import JobStore
from runtime.model_store.layout import artifact_key
from runtime.model_store.manifest import ManifestStore, ModelEntry, ModelFile
from runtime.node_catalog import NodeCatalog
from runtime.queues.memory import InMemoryQueue
from runtime.workflow_files import ManifestFiles, check_workflow, loader_files

CATALOG = NodeCatalog.from_json(
    (Path(__file__).resolve().parents[1] / "fixtures" / "comfyui" / "node_catalog_0.3.64.json").read_text())
KEY, RECORD = generate_key("wf")
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}


def entry(model_id: str, kind: str, *paths: str) -> ModelEntry:
    files = tuple(ModelFile(path=p, key=artifact_key(kind, model_id, "v1", p), size=1, sha256="0" * 64)
                  for p in paths)
    return ModelEntry(model_id=model_id, kind=kind, version="v1", files=files, uploaded_at="2026-12-07T00:00:00Z")


MODELS = {e.model_id: e for e in (entry("detail-lora", "lora", "detail.safetensors"),
                                  entry("sdxl-vae", "vae", "sdxl_vae.safetensors"),
                                  entry("sdxl-base-1.0", "checkpoint", "sd_xl_base_1.0.safetensors"))}


def graph(**changes) -> dict:
    g = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "anything.safetensors"}},
        "5": {"class_type": "LoraLoader", "inputs": {"model": ["4", 0], "clip": ["4", 1], "strength_model": 1.0,
                                                      "strength_clip": 1.0, "lora_name": "detail.safetensors"}},
        "6": {"class_type": "VAELoader", "inputs": {"vae_name": "sdxl_vae.safetensors"}},
        "7": {"class_type": "GenaiFleetSolarize", "inputs": {"image": ["8", 0], "threshold": 0.5}},
        "8": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": "wf"}},
    }
    for node, (key, value) in changes.items():  # n7=("class_type", "X") / n5=("lora_name", "y.safetensors")
        target = g[node.removeprefix("n")]
        if key == "class_type":
            target["class_type"] = value
        else:
            target["inputs"][key] = value
    return g


def test_a_graph_the_fleet_can_run_has_no_problem():
    assert check_workflow(graph(), CATALOG, ManifestFiles(MODELS)) == []


def test_unknown_classes_and_files_are_named_per_node():
    g = graph(n7=("class_type", "NoSuchNode"), n5=("lora_name", "missing.safetensors"))
    g["10"] = {"class_type": "AlsoMissing", "inputs": {}}
    problems = check_workflow(g, CATALOG, ManifestFiles(MODELS))
    assert [(p.node, p.missing, p.class_type, p.file) for p in problems] == [
        ("7", "class", "NoSuchNode", ""), ("10", "class", "AlsoMissing", ""),
        ("5", "file", "LoraLoader", "missing.safetensors")]
    assert problems[2].error()["field"] == "inputs.workflow.5.inputs.lora_name"
    assert "kind 'lora'" in problems[2].message()


def test_a_file_of_another_kind_does_not_count():
    """sdxl_vae.safetensors is a vae entry: named by a LoRA loader it is missing (the worker would link it into
    models/vae, where LoraLoader does not look)."""
    problems = check_workflow(graph(n5=("lora_name", "sdxl_vae.safetensors")), CATALOG, ManifestFiles(MODELS))
    assert [(p.node, p.folder) for p in problems] == [("5", "loras")]


def test_the_checkpoint_the_backend_sets_and_links_are_not_files():
    names = {(f.node, f.input) for f in loader_files(graph(), CATALOG)}
    assert names == {("5", "lora_name"), ("6", "vae_name")}  # not 4's ckpt_name (the job's model goes there)


def test_files_in_a_folder_without_a_store_kind_are_skipped_with_a_warning():
    g = graph()
    g["11"] = {"class_type": "StyleModelLoader", "inputs": {"style_model_name": "whatever.safetensors"}}
    checker = WorkflowChecker(lambda: CATALOG, lambda: ManifestFiles(MODELS))
    verdict = checker.check(g)
    assert verdict.problems == [] and "style_models" in verdict.header()


# --- through the API ---------------------------------------------------------------------------------------------
class NoWrites:
    def __getattr__(self, name):
        raise AssertionError(f"the job store was used ({name}) for a request that must be refused first")


def _post(app: ApiApp, g: dict):
    body = {"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {"workflow": g}}
    return app.handle(Request("POST", "/v1/jobs", HEADERS, body=json.dumps(body).encode()))


def test_the_api_refuses_with_422_naming_each_node_and_writes_nothing():
    queue = InMemoryQueue()
    app = ApiApp(NoWrites(), queue, ApiOptions(auth_mode="api-key"), keys=StaticKeyStore({RECORD.key_id: RECORD}),
                 workflow_checker=WorkflowChecker(lambda: CATALOG, lambda: ManifestFiles(MODELS)))
    answer = _post(app, graph(n7=("class_type", "NoSuchNode"), n6=("vae_name", "gone.safetensors")))
    assert answer.status == 422 and answer.content_type == "application/problem+json"
    assert answer.body["type"].endswith("/workflow-not-runnable") and "7" in answer.body["detail"]
    assert [(e["node"], e["rule"]) for e in answer.body["errors"]] == [("7", "unknown-node-class"),
                                                                        ("6", "unknown-model-file")]
    assert answer.body["errors"][1]["file"] == "gone.safetensors"
    assert queue.receive(10, 0) == []


@pytest.fixture
def app_with(aws_clients, job_table):
    def make(checker: WorkflowChecker) -> tuple[ApiApp, InMemoryQueue]:
        queue = InMemoryQueue()
        return ApiApp(JobStore(job_table, aws_clients("dynamodb")), queue, ApiOptions(auth_mode="api-key"),
                      keys=StaticKeyStore({RECORD.key_id: RECORD}), workflow_checker=checker), queue
    return make


def test_no_catalog_published_is_accepted_with_a_warning(app_with, aws_clients):
    s3 = aws_clients("s3")
    s3.create_bucket(Bucket="catalogs-41")
    app, queue = app_with(WorkflowChecker(s3_catalog(s3, "s3://catalogs-41/node-catalogs/cuda/ami-0abc.json"),
                                          None))
    answer = _post(app, graph(n7=("class_type", "NoSuchNode")))
    assert answer.status == 202, answer.body
    assert answer.headers["Warning"].startswith('299 genai-fleet "workflow not checked: no node catalog is published')
    assert len(queue.receive(10, 0)) == 1


def test_a_catalog_and_manifest_in_s3_refuse_what_they_lack(app_with, aws_clients):
    s3 = aws_clients("s3")
    s3.create_bucket(Bucket="catalogs-41b")
    s3.put_object(Bucket="catalogs-41b", Key="cuda/ami-1.json", Body=CATALOG.to_json().encode())
    s3.create_bucket(Bucket="models-41b")
    store = ManifestStore(s3, "models-41b")
    for e in MODELS.values():
        store.register(e)
    app, queue = app_with(WorkflowChecker(s3_catalog(s3, "s3://catalogs-41b/cuda/ami-1.json"),
                                          s3_manifest_files(s3, "models-41b")))
    ok = _post(app, graph())
    assert ok.status == 202 and "Warning" not in ok.headers, ok.body
    refused = _post(app, graph(n5=("lora_name", "other.safetensors")))
    assert refused.status == 422 and refused.body["errors"][0]["node"] == "5"
    assert len(queue.receive(10, 0)) == 1


def test_other_tasks_are_not_checked():
    app = ApiApp(NoWrites(), InMemoryQueue(), ApiOptions(auth_mode="api-key"),
                 workflow_checker=WorkflowChecker(lambda: NodeCatalog({}), None))
    assert app._check_workflow({"task": "txt2img", "inputs": {}}) is None


def test_the_environment_names_a_bad_catalog_location():
    with pytest.raises(ValueError, match=r"GENAI_NODE_CATALOG='catalog\.json': must be s3://"):
        ApiConfig.from_env({"GENAI_JOB_TABLE": "t", "GENAI_NODE_CATALOG": "catalog.json"})
    cfg = ApiConfig.from_env({"GENAI_JOB_TABLE": "t", "GENAI_NODE_CATALOG": "s3://b/k.json"})
    assert cfg.node_catalog == "s3://b/k.json" and ApiConfig.from_env(cfg.to_env()) == cfg
    assert parse_s3_uri("s3://b/node-catalogs/cuda/ami-1.json") == ("b", "node-catalogs/cuda/ami-1.json")


def test_the_bench_runs_on_a_200_kb_graph(capsys):
    from bench.bench_workflow_check import main

    assert main(["--repeat", "1"]) == 0
    assert '"graph_bytes": 199' in capsys.readouterr().out
