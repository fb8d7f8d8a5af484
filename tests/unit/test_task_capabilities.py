"""Tasks are capabilities (issue 36, point 1): each backend declares the tasks it serves in the backend catalog,
the stack tells the API (``GENAI_TASKS``), and the API refuses any other task with 422 naming the task and the
served ones, before anything is written. The published schema accepts every request the API accepts (a body
without ``task`` is txt2img), and every job request in the docs validates against it and against the API."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest

from components import api as api_component
from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.environment import ApiConfig
from runtime.api.openapi import document
from runtime.backends.base import CATALOG, BackendError, served_tasks
from runtime.jobs.errors import ValidationError
from runtime.jobs.models import TASKS
from runtime.jobs.schema import validate_job
from runtime.queues.memory import InMemoryQueue
from tests.unit.component_harness import build, fleet, sqs_endpoint

ROOT = Path(__file__).resolve().parents[2]
KEY, RECORD = generate_key("tasks")
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
VIDEO = {"model": "sdxl-base-1.0", "task": "txt2video", "inputs": {"prompt": "a wave", "frames": 48, "fps": 12}}
MINIMAL = {"txt2img": {"prompt": "p"}, "img2img": {"prompt": "p", "image": "https://example.com/a.png"},
           "txt2video": {"prompt": "p"}, "img2video": {"prompt": "p", "image": "https://example.com/a.png"},
           "comfyui-workflow": {"workflow": {"3": {"class_type": "K"}}}}


class NoWrites:
    """A job store that fails the test on any use: a refused task must write nothing."""

    def __getattr__(self, name):
        raise AssertionError(f"the job store was used ({name}) for a request that must be refused first")


def _app(tasks: tuple[str, ...]) -> tuple[ApiApp, InMemoryQueue]:
    queue = InMemoryQueue()
    return ApiApp(store=NoWrites(), producer=queue, options=ApiOptions(auth_mode="api-key", served_tasks=tasks),
                  keys=StaticKeyStore({RECORD.key_id: RECORD})), queue


def test_every_backend_declares_tasks_from_the_known_ones():
    for name, entry in CATALOG.items():
        assert entry.tasks and set(entry.tasks) <= set(TASKS), name
        assert served_tasks(name) == tuple(t for t in TASKS if t in entry.tasks)
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        served_tasks("nope")


@pytest.mark.parametrize("backend", ["a1111", "neuron"])
def test_a1111_and_neuron_fleets_serve_no_video(backend):
    assert not {"txt2video", "img2video"} & set(served_tasks(backend))


def test_img2video_is_a_task_with_a_required_image():
    spec = validate_job({"model": "m", "task": "img2video", "inputs": MINIMAL["img2video"]})
    assert spec["task"] == "img2video" and spec["inputs"]["frames"] == 16 and spec["inputs"]["image"]
    with pytest.raises(ValidationError) as info:
        validate_job({"model": "m", "task": "img2video", "inputs": {"prompt": "p"}})
    assert [(p.field, p.rule) for p in info.value.problems] == [("inputs.image", "required")]


def test_the_validator_names_the_task_and_the_served_ones():
    with pytest.raises(ValidationError) as info:
        validate_job(VIDEO, served_tasks=("txt2img", "img2img"))
    (problem,) = info.value.problems
    assert (problem.field, problem.rule) == ("task", "unserved-task")
    assert "txt2video" in problem.message and "txt2img, img2img" in problem.message
    assert validate_job(VIDEO, served_tasks=("txt2video",))["task"] == "txt2video"
    assert validate_job({"model": "m", "inputs": {"prompt": "p"}}, served_tasks=("txt2img",))["task"] == "txt2img"


@pytest.mark.parametrize("backend", ["a1111", "neuron"])
def test_the_api_refuses_an_unserved_task_with_422_before_anything_is_written(backend):
    app, queue = _app(served_tasks(backend))
    resp = app.handle(Request("POST", "/v1/jobs", headers=HEADERS, body=json.dumps(VIDEO).encode()))
    assert resp.status == 422, resp.body
    (error,) = resp.body["errors"]
    assert error["field"] == "task" and error["rule"] == "unserved-task"
    assert "txt2video" in error["message"] and "txt2img, img2img" in error["message"]
    assert len(queue) == 0


def test_the_stack_writes_the_fleets_tasks_and_the_api_reads_them_back():
    """The API's environment contract: the component writes GENAI_TASKS from the catalog; the handler's config
    reads the same tuple (an A1111 stack's API refuses txt2video)."""
    cfg = fleet()
    tasks = served_tasks("a1111")
    built = build(lambda: api_component.Api("api", api_component.ApiArgs(
        stack=cfg.identity, api=cfg.api, storage=cfg.storage, job_table_name="jobs",
        job_table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/jobs", queue=sqs_endpoint(),
        average_job_seconds=3.0, tasks=tasks)), "api_url")
    env = built.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    assert json.loads(env["GENAI_TASKS"]) == list(tasks)
    assert ApiConfig.from_env(env).tasks == tasks


@pytest.mark.parametrize("value", ['["txt2img", "txt2movie"]', "txt2img", "[]", '{"a": 1}'])
def test_a_bad_tasks_variable_fails_naming_it_and_the_allowed_values(value):
    with pytest.raises(RuntimeError, match=r"GENAI_TASKS .*txt2img, img2img, txt2video, img2video"):
        ApiConfig.from_env({"GENAI_JOB_TABLE": "jobs", "GENAI_TASKS": value})


def test_unset_tasks_means_every_task():
    assert ApiConfig.from_env({"GENAI_JOB_TABLE": "jobs"}).tasks == ()
    app, _ = _app(())
    assert app.options.served_tasks == ()  # validate_job gets None: no task refused for not being served


# --- the published schema ---------------------------------------------------------------------------------

def _request_validator() -> jsonschema.Draft202012Validator:
    doc = document()
    return jsonschema.Draft202012Validator({"components": doc["components"],
                                            **doc["components"]["schemas"]["JobRequest"]})


def test_a_body_without_task_matches_the_txt2img_variant_only():
    """The published document refused the most common request (its oneOf by task matched no branch)."""
    doc = document()
    body = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse"}}
    assert _request_validator().is_valid(body)
    matches = [v["$ref"] for v in doc["components"]["schemas"]["JobRequest"]["oneOf"]
               if jsonschema.Draft202012Validator({"components": doc["components"], **v}).is_valid(body)]
    assert matches == ["#/components/schemas/Txt2ImgJob"]


@pytest.mark.parametrize("task", TASKS)
def test_each_task_matches_exactly_its_own_variant(task):
    doc = document()
    body = {"model": "m", "task": task, "inputs": MINIMAL[task]}
    validate_job(body)
    matches = [v["$ref"].rsplit("/", 1)[1] for v in doc["components"]["schemas"]["JobRequest"]["oneOf"]
               if jsonschema.Draft202012Validator({"components": doc["components"], **v}).is_valid(body)]
    assert len(matches) == 1
    prop = doc["components"]["schemas"][matches[0]]["properties"]["task"]
    assert task in [p.get("const") for p in [prop, *prop.get("anyOf", ())]]  # txt2img's also takes null


def _documented_requests() -> list[tuple[str, dict]]:
    """Every job request body in the README and docs/: JSON objects with ``model`` and ``inputs``, in ```json
    blocks or in a curl's ``-d '...'``."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text()
        candidates = re.findall(r"```json\n(.*?)```", text, re.S) + re.findall(r"-d '(\{.*?\})'", text, re.S)
        for candidate in candidates:
            try:
                value = json.loads(candidate)
            except ValueError:
                continue
            if isinstance(value, dict) and "model" in value and "inputs" in value:
                found.append((path.name, value))
    return found


def test_the_docs_hold_job_requests_of_every_shape():
    bodies = [body for _, body in _documented_requests()]
    assert any("task" not in body for body in bodies)  # the first example users try
    assert {body.get("task") for body in bodies} >= {"txt2img", "txt2video"}


@pytest.mark.parametrize("where,body", _documented_requests(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_documented_request_validates_against_the_schema_and_the_api(where, body):
    errors = [e.message for e in _request_validator().iter_errors(body)]
    assert not errors, (where, body, errors)
    validate_job(body)
