"""The job spec travels typed: one set of limits and defaults (runtime/jobs/models.py) for the API, the worker
and every backend, so a new input is a field there and nowhere else."""

from __future__ import annotations

import ast
import random
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field
from pydantic import ValidationError as PydanticValidationError

from runtime.backends.base import JobContext, JobInputError
from runtime.jobs import models
from runtime.jobs.models import Txt2ImgInputs, WorkflowInputs
from runtime.jobs.schema import JobSpec, validate_job
from runtime.worker.inputs import image_refs, read_job
from tests.job_context import data_uri, job_context, job_spec, png

BACKENDS = Path(__file__).resolve().parents[2] / "runtime" / "backends"


def test_parse_gives_the_tasks_model_with_the_apis_defaults_and_round_trips_to_the_queue_message():
    body = {"model": "m", "task": "img2img", "inputs": {"prompt": "p", "image": data_uri(png())}}
    spec = JobSpec.parse(body)
    assert type(spec.inputs) is models.Img2ImgInputs and spec.task == "img2img"
    assert (spec.inputs.steps, spec.inputs.strength, spec.inputs.width, spec.inputs.seed) == (30, 0.75, None, None)
    assert spec.to_dict() == validate_job(body)  # what the queue message carries, field for field
    assert JobSpec.parse(spec.to_dict()) == spec
    with pytest.raises(PydanticValidationError, match="frozen"):  # read-only: no backend edits another's view
        spec.inputs.steps = 5  # type: ignore[misc]


def test_with_seed_draws_a_null_seed_once_and_leaves_set_seeds_and_workflows_alone():
    spec = job_spec(prompt="p")
    drawn = spec.with_seed(random.Random(1))
    assert drawn.inputs.seed == random.Random(1).randrange(2**32) and spec.inputs.seed is None  # a new spec
    assert drawn.with_seed() is drawn and job_spec(seed=0).with_seed().inputs.seed == 0
    workflow = job_spec(task="comfyui-workflow", workflow={"1": {"class_type": "SaveImage", "inputs": {}}})
    assert workflow.with_seed() is workflow  # its graph keeps its own seeds
    ctx = JobContext("j", spec)
    assert ctx.seed() == ctx.seed() == ctx.job.inputs.seed  # drawn once per attempt, then kept
    with pytest.raises(JobInputError, match="workflow keeps its graph's seeds"):
        JobContext("w", workflow).seed()


def test_read_job_refuses_what_the_api_refuses_naming_each_field():
    with pytest.raises(JobInputError) as info:
        read_job({"model": "m", "inputs": {"prompt": "p", "steps": 151, "width": 65, "delay": 1}})
    message = str(info.value)
    assert "inputs.steps" in message and "inputs.width" in message and "inputs.delay" in message
    with pytest.raises(JobInputError, match=r"inputs\.image"):  # loopback images only where the agent allows them
        read_job({"model": "m", "task": "img2img", "inputs": {"prompt": "p", "image": "https://127.0.0.1/a.png"}})
    local = read_job({"model": "m", "task": "img2img", "inputs": {"prompt": "p", "image": "https://127.0.0.1/a.png"}},
                     allow_loopback=True)
    assert image_refs(local) == {"image": "https://127.0.0.1/a.png"}


def test_image_refs_come_from_the_typed_inputs():
    assert image_refs(job_spec(prompt="p")) == {}
    mask = data_uri(png(8, 8, (0, 0, 0)))
    assert image_refs(job_spec(task="img2img", mask=mask))["mask"] == mask
    graph = {"1": {"class_type": "LoadImage", "inputs": {"image": "cat"}}}
    assert image_refs(job_spec(task="comfyui-workflow", workflow=graph, images={"cat": mask})) == {"cat": mask}


def test_an_img2video_jobs_start_image_is_fetched_for_the_backend():
    """Issue 36: the worker fetches img2video's ``image`` like img2img's (before, no backend got it in a real
    agent: the diffusers backend failed the job, the test pattern drew its own background)."""
    start = data_uri(png(8, 8, (200, 90, 40)))
    spec = JobSpec.parse({"model": "m", "task": "img2video", "inputs": {"prompt": "p", "image": start}})
    assert image_refs(spec) == {"image": start}
    assert image_refs(JobSpec.parse({"model": "m", "task": "txt2video", "inputs": {"prompt": "p"}})) == {}


def test_a_field_added_to_the_model_reaches_the_backend_with_its_default_and_bound(monkeypatch):
    """Adding an input is one edit: the task's model. The worker's read and the backend's context follow."""

    class WithLoras(Txt2ImgInputs):
        loras: Annotated[list[str], Field(max_length=2)] = []

    monkeypatch.setitem(models.TASK_INPUTS, "txt2img", WithLoras)
    ctx = job_context(loras=["film-grain"])
    assert isinstance(ctx.job.inputs, WithLoras) and ctx.job.inputs.loras == ["film-grain"]
    assert job_context().job.inputs.loras == []  # its default, from the model
    assert ctx.job.to_dict()["inputs"]["loras"] == ["film-grain"]  # and the queue message carries it
    with pytest.raises(JobInputError, match=r"inputs\.loras"):  # its bound, from the model
        read_job({"model": "m", "inputs": {"prompt": "p", "loras": ["a", "b", "c"]}})


def _input_reads(tree: ast.AST) -> list[str]:
    """``inputs[...]`` / ``inputs.get(...)`` / ``x.inputs[...]``: the job's inputs read as a dict by key."""
    def is_inputs(node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and node.id == "inputs") or \
            (isinstance(node, ast.Attribute) and node.attr == "inputs")

    found = []
    for node in ast.walk(tree):
        subscript = isinstance(node, ast.Subscript) and is_inputs(node.value)
        get = isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
            and is_inputs(node.func.value)
        if subscript or get:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_backends_hold_no_limits_or_defaults_of_the_job_inputs():
    """Backends read the typed fields (``ctx.job.inputs.steps``); none reads the inputs as a dict with a default
    of its own, and none defines a bound named like the models' (MAX_SIDE, MAX_OUTPUTS, ...)."""
    bounds = {name for name in vars(models) if name.startswith(("MAX_", "MIN_"))}
    offenders = {}
    for path in sorted(BACKENDS.glob("*.py")):
        tree = ast.parse(path.read_text())
        found = _input_reads(tree)
        found += [f"line {node.lineno}: defines {target.id}" for node in tree.body if isinstance(node, ast.Assign)
                  for target in node.targets if isinstance(target, ast.Name) and target.id in bounds]
        if found:
            offenders[path.name] = found
    assert offenders == {}


def test_the_guard_sees_a_dict_read_with_a_default():
    planted = ast.parse('steps = int(ctx.inputs.get("steps") or 20)\nwidth = inputs["width"]\n')
    assert len(_input_reads(planted)) == 2
    assert _input_reads(ast.parse('node_inputs["seed"] = 1\nimage = ctx.input_images.get("image")\n')) == []


def test_a_workflow_job_on_an_image_backend_is_an_input_error_naming_the_task():
    ctx = job_context(task="comfyui-workflow", workflow={"1": {"class_type": "SaveImage", "inputs": {}}})
    assert isinstance(ctx.job.inputs, WorkflowInputs)
    with pytest.raises(JobInputError, match="comfyui-workflow"):
        ctx.image_inputs()
