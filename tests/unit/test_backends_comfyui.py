"""ComfyUI adapter against the fake ComfyUI (tests/fakes/fake_comfyui.py, as strict as the real server)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from runtime.backends.base import BackendError, BackendUnavailable, JobContext, JobInputError, JobInterrupted
from runtime.backends.comfyui import ComfyUIBackend, default_workflow, describe_node_errors
from tests.fakes.fake_comfyui import FakeComfyUI
from tests.job_context import job_context, job_spec

MODEL_FREE = {  # runs on a real ComfyUI without any model
    "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
    "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
    "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "t"}},
}


@pytest.fixture
def comfy(tmp_path: Path):
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=0.1, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "cache" / "sd15@v1" / "sd15.safetensors"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"weights")
    return path


def backend_for(fake: FakeComfyUI, **kw) -> ComfyUIBackend:
    return ComfyUIBackend(base_url=fake.url, model_dir=str(fake.models_dir), poll_seconds=0.05, **kw)


def ctx(job_id: str = "j_test1", **inputs) -> JobContext:
    """A txt2img job (the default graph), or a comfyui-workflow job when ``workflow`` is given; seed 7."""
    if "workflow" in inputs:
        return job_context(job_id, "sd15", "comfyui-workflow", **{"seed": 7, **inputs})
    return job_context(job_id, "sd15", "txt2img", **{"prompt": "a cat", "seed": 7, **inputs})


@pytest.mark.parametrize("use_websocket", [True, False], ids=["websocket", "history-polling"])
def test_attempt_runs_under_its_own_prompt_id_and_cleans_up(comfy, model_file, use_websocket):
    backend = backend_for(comfy, use_websocket=use_websocket)
    backend.wait_ready(5)
    backend.load_model("sd15", model_file)
    assert (comfy.models_dir / "sd15.safetensors").resolve() == model_file.resolve()
    job = ctx()
    result = backend.run(job)
    sent = comfy.prompts[0]
    assert sent["prompt_id"] == job.backend_id and job.backend_id.startswith("j_test1.")
    loader = next(n for n in sent["prompt"].values() if n["class_type"] == "CheckpointLoaderSimple")
    assert loader["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert sent["prompt"]["9"]["inputs"]["filename_prefix"] == f"genai_{job.backend_id}"
    assert [(o.name, o.content_type) for o in result.outputs] == [("9-genai_00001_.png", "image/png")]
    assert result.outputs[0].data.startswith(b"\x89PNG")
    assert result.metadata["prompt_id"] == job.backend_id
    assert list(comfy.output_dir.iterdir()) == []  # the attempt's files are gone from the instance
    assert job.backend_id not in comfy.history
    backend.close()


def test_websocket_is_open_before_the_prompt_so_a_fast_prompt_is_seen_at_once(comfy, model_file):
    comfy.delay = 0.0
    backend = ComfyUIBackend(base_url=comfy.url, model_dir=str(comfy.models_dir), poll_seconds=2.0)
    backend.load_model("sd15", model_file)
    backend.run(ctx("j_warm"))
    comfy.requests.clear()
    started = time.monotonic()
    backend.run(ctx("j_cached"))  # everything but SaveImage is replayed from ComfyUI's cache
    # missing the events waits out the websocket step (4 polls = 8 s): half of that tells them apart on a loaded machine
    assert time.monotonic() - started < 4.0
    order = [r for r in comfy.requests if r in (("GET", "/ws"), ("POST", "/prompt"))]
    assert order == [("GET", "/ws"), ("POST", "/prompt")]


def test_identical_jobs_each_get_their_own_files_despite_the_cache(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    first, second = backend.run(ctx("j_a")), backend.run(ctx("j_b"))  # same graph, same seed
    assert first.outputs[0].data and second.outputs[0].data
    assert len(comfy.history) == 0 and list(comfy.output_dir.iterdir()) == []


def test_validation_errors_name_the_node(comfy, model_file):
    backend = backend_for(comfy)
    workflow = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "missing.safetensors"}},
                "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}
    with pytest.raises(JobInputError, match=r"node 1 \(CheckpointLoaderSimple\).*not in list"):
        backend.run(ctx(workflow=workflow))


def test_unknown_node_class_names_the_node_from_error_details(comfy):
    workflow = {**MODEL_FREE, "7": {"class_type": "NoSuchNode", "inputs": {}}}
    with pytest.raises(JobInputError, match=r"NoSuchNode does not exist.*Node ID '#7'"):
        backend_for(comfy).run(ctx(workflow=workflow))
    assert comfy.prompts == []


def test_describe_node_errors_keeps_details_only_when_no_node_is_named():
    body = {"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs failed validation",
                      "details": "Required input is missing: images"},
            "node_errors": {"3": {"class_type": "SaveImage", "errors": [{"message": "Required input is missing",
                                                                           "details": "images"}]}}}
    assert describe_node_errors(body) == ("Prompt outputs failed validation; node 3 (SaveImage): "
                                          "Required input is missing images")


def test_preview_only_workflow_is_an_input_error(comfy):
    workflow = {**MODEL_FREE, "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}}}
    with pytest.raises(JobInputError, match="PreviewImage"):
        backend_for(comfy).run(ctx(workflow=workflow))


def test_user_workflow_gets_model_seed_and_uploaded_image(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    workflow = default_workflow(job_spec(prompt="x").inputs, 1, "other.safetensors", None)
    workflow["10"] = {"class_type": "LoadImage", "inputs": {"image": "init"}}
    workflow["3"]["inputs"]["latent_image"] = ["11", 0]
    workflow["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    job = ctx(workflow=workflow, seed=42)
    job.input_images = {"init": b"\x89PNG fake"}
    backend.run(job)
    sent = comfy.prompts[0]["prompt"]
    assert sent["4"]["inputs"]["ckpt_name"] == "sd15.safetensors"
    assert sent["3"]["inputs"]["seed"] == 42
    assert sent["10"]["inputs"]["image"] == f"{job.backend_id}-init.png"
    assert list(comfy.input_dir.iterdir()) == []  # the uploaded input is deleted with the attempt


def test_server_errors_and_execution_errors_are_retryable(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    comfy.fail_prompts = 1
    with pytest.raises(BackendUnavailable):
        backend.run(ctx("j_a"))
    comfy.fail_executions = 1
    with pytest.raises(BackendError, match="illegal memory access") as info:
        backend.run(ctx("j_b"))
    assert not isinstance(info.value, JobInputError)
    assert backend.run(ctx("j_c")).outputs


def test_node_failure_on_a_model_free_workflow(comfy):
    huge = {**MODEL_FREE, "1": {"class_type": "EmptyImage",
                                "inputs": {"width": 16384, "height": 16384, "batch_size": 4096, "color": 0}}}
    with pytest.raises(BackendError, match=r"node 1 \(EmptyImage\) failed: RuntimeError: .*can't allocate memory"):
        backend_for(comfy).run(ctx(workflow=huge))


def test_crash_mid_job_is_backend_unavailable(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    comfy.die_on_execute = True
    with pytest.raises(BackendUnavailable):
        backend.run(ctx())


def test_interrupt_posts_interrupt_for_our_prompt_and_raises(comfy, model_file):
    comfy.delay = 5
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    timer = threading.Timer(0.3, backend.interrupt, args=(job,))
    timer.start()
    started = time.monotonic()
    with pytest.raises(JobInterrupted):
        backend.run(job)
    timer.join()
    assert comfy.interrupts >= 1
    assert time.monotonic() - started < 3


def test_time_limit_interrupts_the_prompt_and_cleans_up(comfy, model_file):
    comfy.node_seconds = {"KSampler": 30}
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    job = ctx()
    job.deadline = time.monotonic() + 0.5
    with pytest.raises(BackendError, match="time limit"):
        backend.run(job)
    deadline = time.monotonic() + 20  # the fake stops at the sampler's next step
    while time.monotonic() < deadline and job.backend_id not in comfy.outcomes:
        time.sleep(0.05)
    assert comfy.outcomes[job.backend_id] == "execution_interrupted"


def test_readiness_wait_gives_up(tmp_path):
    backend = ComfyUIBackend(base_url="http://127.0.0.1:9", model_dir=str(tmp_path))
    with pytest.raises(BackendUnavailable, match="not ready"):
        backend.wait_ready(0.3)
    with pytest.raises(BackendUnavailable, match="process exited"):
        ComfyUIBackend(base_url="http://127.0.0.1:9", model_dir=str(tmp_path), is_alive=lambda: False).wait_ready(30)


def test_default_graph_takes_the_typed_inputs_with_the_apis_defaults():
    """The graph reads the job's typed fields: the API's defaults (30 steps, 1024 x 1024, cfg 7.0), not the
    adapter's old ones (20 steps, 512 x 512); ComfyUI's KSampler needs a sampler: euler when none is named."""
    graph = default_workflow(job_spec(prompt="a cat").inputs, 11, "m.safetensors", None)
    sampler = graph["3"]["inputs"]
    assert (sampler["steps"], sampler["cfg"], sampler["seed"], sampler["denoise"]) == (30, 7.0, 11, 1.0)
    assert sampler["sampler_name"] == "euler"
    assert graph["5"]["inputs"] == {"width": 1024, "height": 1024, "batch_size": 1}
    named = default_workflow(job_spec(prompt="a cat", scheduler="dpmpp_2m", num_outputs=3, width=512,
                                      height=768).inputs, 1, "m.safetensors", None)
    assert named["3"]["inputs"]["sampler_name"] == "dpmpp_2m"
    assert named["5"]["inputs"] == {"width": 512, "height": 768, "batch_size": 3}
    img = default_workflow(job_spec(task="img2img").inputs, 1, "m.safetensors", "up.png")
    assert img["3"]["inputs"]["denoise"] == 0.75  # the API's strength default (the adapter's was 1.0)
    assert img["3"]["inputs"]["latent_image"] == ["11", 0] and img["10"]["inputs"]["image"] == "up.png"
    assert "5" not in img  # the latent is the encoded input image: its size is the image's


def test_a_workflow_without_seed_keeps_its_graphs_seeds_and_a_txt2img_null_seed_is_drawn(comfy, model_file):
    backend = backend_for(comfy)
    backend.load_model("sd15", model_file)
    seeded = {**MODEL_FREE, "9": {"class_type": "KSampler", "inputs": {"seed": 5, "noise_seed": 6}}}
    job = job_context("j_wf", "sd15", "comfyui-workflow", workflow=seeded)
    assert job.job.with_seed() is job.job  # the agent's seed step leaves a workflow alone
    graph = backend._workflow(job, job.backend_id, [])
    assert graph["9"]["inputs"] == {"seed": 5, "noise_seed": 6}
    assert graph["3"]["inputs"]["filename_prefix"] == f"t_{job.backend_id}"
    assert job.job.inputs.workflow["3"].model_dump()["inputs"]["filename_prefix"] == "t"  # the spec is not edited
    drawn = job_context("j_txt", "sd15", prompt="a cat")
    graph = backend._workflow(drawn, drawn.backend_id, [])
    assert graph["3"]["inputs"]["seed"] == drawn.job.inputs.seed is not None
