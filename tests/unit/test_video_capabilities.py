"""Where the fleet lacks what a video needs, its capabilities say so and the API refuses the job (issue 37; issue 36's
"refuses with 422" per model and output format): the backend catalog says which video formats a backend writes and
which model store kinds it makes a video from, the stack writes both into the API's environment, and the API
refuses a ComfyUI txt2video job on an image checkpoint, or asking for a GIF, with 422 naming the field and what the
fleet serves, before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components import api as api_component
from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.environment import ApiConfig
from runtime.api.video_capabilities import refuse_unserved_video
from runtime.backends.base import CATALOG, BackendError, video_capabilities
from runtime.backends.comfyui_video import WRITERS
from runtime.jobs.errors import ValidationError
from runtime.jobs.models import VIDEO_FORMATS
from runtime.jobs.schema import validate_job
from runtime.queues.memory import InMemoryQueue
from tests.unit.component_harness import build, fleet, sqs_endpoint

KEY, RECORD = generate_key("video-caps")
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
MANIFEST = [{"id": "sd15", "kind": "checkpoint", "hot": False}, {"id": "wan/ti2v", "kind": "video", "hot": True},
            {"id": "wan/other", "kind": "video", "hot": False}]


class Manifest:
    def __init__(self, models, source="manifest"):
        self.models, self.source = models, source

    def list_models(self):
        return self.source, self.models


class NoWrites:
    """A job store that fails the test on any use: a refused job must write nothing."""

    def __getattr__(self, name):
        raise AssertionError(f"the job store was used ({name}) for a request that must be refused first")


def video(model="wan/ti2v", task="txt2video", **inputs):
    body = {"model": model, "task": task, "inputs": {"prompt": "a wave", "frames": 17, "fps": 8, **inputs}}
    if task == "img2video":
        body["inputs"]["image"] = "https://example.com/a.png"
    return body


def refused(body, backend="comfyui", models=MANIFEST) -> list[tuple[str, str, str]]:
    formats, kinds = video_capabilities(backend)
    try:
        refuse_unserved_video(validate_job(body), formats, kinds, Manifest(models))
    except ValidationError as exc:
        return [(p.field, p.rule, p.message) for p in exc.problems]
    return []


def test_the_catalog_says_what_each_backend_makes_videos_from_and_into():
    assert video_capabilities("comfyui") == (("mp4", "webm", "webp"), ("video",))
    assert set(video_capabilities("comfyui")[0]) == set(WRITERS)  # exactly what its default graph can write
    assert video_capabilities("diffusers") == (VIDEO_FORMATS, ("video",))
    assert video_capabilities("test-pattern") == (VIDEO_FORMATS, ())  # draws its frames: any model
    for name in ("a1111", "neuron"):
        assert video_capabilities(name) == ((), ())
    for name, entry in CATALOG.items():
        assert set(entry.video_formats) <= set(VIDEO_FORMATS), name
    with pytest.raises(BackendError, match="unknown backend 'nope'"):
        video_capabilities("nope")


@pytest.mark.parametrize("task", ["txt2video", "img2video"])
def test_a_comfyui_video_job_on_an_image_checkpoint_is_refused_naming_the_video_models(task):
    [(field, rule, message)] = refused(video("sd15", task))
    assert (field, rule) == ("model", "not-a-video-model")
    assert "sd15 is a model of kind checkpoint" in message and f"{task} on this fleet needs a model of kind video" \
        in message and "wan/other, wan/ti2v" in message


def test_a_format_the_fleet_cannot_write_is_refused_naming_the_ones_it_writes():
    [(field, rule, message)] = refused(video(output_format="gif"))
    assert (field, rule) == ("inputs.output_format", "unserved-format")
    assert "gif" in message and "mp4, webm, webp" in message
    both = refused(video("sd15", output_format="gif"))
    assert [p[:2] for p in both] == [("inputs.output_format", "unserved-format"), ("model", "not-a-video-model")]


def test_what_the_fleet_serves_passes_and_other_tasks_and_backends_are_not_judged():
    for fmt in ("mp4", "webm", "webp"):
        assert refused(video(output_format=fmt)) == []
    assert refused({"model": "sd15", "task": "txt2img", "inputs": {"prompt": "p"}}) == []
    assert refused(video("sd15", output_format="gif"), backend="test-pattern") == []
    assert refused(video("not-listed")) == []  # a model the manifest does not list: the worker says why
    assert refused(video("sd15"), models=[]) == []
    formats, kinds = video_capabilities("comfyui")
    refuse_unserved_video(validate_job(video("sd15")), formats, kinds, Manifest([], source="config"))  # no kinds


def test_no_video_models_in_the_store_says_how_to_upload_one():
    [(_, _, message)] = refused(video("sd15"), models=MANIFEST[:1])
    assert "genai-model-upload --kind video" in message


def test_the_api_refuses_with_422_before_anything_is_written():
    formats, kinds = video_capabilities("comfyui")
    queue = InMemoryQueue()
    app = ApiApp(store=NoWrites(), producer=queue, keys=StaticKeyStore({RECORD.key_id: RECORD}),
                 models=Manifest(MANIFEST), options=ApiOptions(auth_mode="api-key", video_formats=formats,
                                                               video_model_kinds=kinds))
    for body, field in ((video("sd15"), "model"), (video(output_format="gif"), "inputs.output_format")):
        resp = app.handle(Request("POST", "/v1/jobs", headers=HEADERS, body=json.dumps(body).encode()))
        assert resp.status == 422, resp.body
        assert [e["field"] for e in resp.body["errors"]] == [field]
    assert len(queue) == 0


def test_the_stack_writes_the_video_capabilities_and_the_api_reads_them_back():
    cfg = fleet()
    formats, kinds = video_capabilities("comfyui")
    built = build(lambda: api_component.Api("api", api_component.ApiArgs(
        stack=cfg.identity, api=cfg.api, storage=cfg.storage, job_table_name="jobs",
        job_table_arn="arn:aws:dynamodb:us-east-1:123456789012:table/jobs", queue=sqs_endpoint(),
        average_job_seconds=3.0, video_formats=formats, video_model_kinds=kinds)), "api_url")
    env = built.one("aws:lambda/function:Function", "api-handler-fn").inputs["environment"]["variables"]
    assert json.loads(env["GENAI_VIDEO_FORMATS"]) == ["mp4", "webm", "webp"]
    assert json.loads(env["GENAI_VIDEO_MODEL_KINDS"]) == ["video"]
    read = ApiConfig.from_env(env)
    assert (read.video_formats, read.video_model_kinds) == (formats, kinds)
    assert ApiConfig.from_env({"GENAI_JOB_TABLE": "jobs"}).video_formats == ()  # unset: every format


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("GENAI_VIDEO_FORMATS", '["mp4", "mov"]', "GENAI_VIDEO_FORMATS .*mp4, webm, webp, gif"),
    ("GENAI_VIDEO_FORMATS", "mp4", "GENAI_VIDEO_FORMATS"),
    ("GENAI_VIDEO_MODEL_KINDS", "[]", "GENAI_VIDEO_MODEL_KINDS"),
])
def test_a_bad_capability_variable_fails_naming_it(variable, value, message):
    with pytest.raises(RuntimeError, match=message):
        ApiConfig.from_env({"GENAI_JOB_TABLE": "jobs", variable: value})


def test_a_comfyui_stack_api_refuses_an_image_checkpoint_video_from_the_real_manifest(moto_endpoint, tmp_path: Path):
    """API level: the handler built from the environment a ComfyUI stack writes, the models uploaded to the store
    with the real upload code (an SD checkpoint and a Wan bundle), DynamoDB and SQS on moto."""
    from fleetdev.worker_support import Stack
    from runtime.api.handler import build_app
    from runtime.model_store.upload import plan, upload

    stack = Stack(moto_endpoint)
    ckpt = tmp_path / "sd15.safetensors"
    ckpt.write_bytes(b"c" * 64)
    upload(stack.s3, stack.models_bucket, plan("sd15", "checkpoint", [ckpt]))
    for part in ("diffusion_models", "text_encoders", "vae"):
        (tmp_path / "wan" / part).mkdir(parents=True)
        (tmp_path / "wan" / part / f"{part}.safetensors").write_bytes(b"w" * 64)
    upload(stack.s3, stack.models_bucket, plan("wan/ti2v", "video", [tmp_path / "wan"]))
    formats, kinds = video_capabilities("comfyui")
    env = ApiConfig(job_table=stack.table, queue_url=stack.queue_url, auth_mode="api-key", api_keys=(KEY,),
                    model_bucket=stack.models_bucket, video_formats=formats, video_model_kinds=kinds,
                    max_wait_seconds=0).to_env()
    app = build_app(ApiConfig.from_env(env), clients={"s3": stack.s3, "sqs": stack.sqs, "dynamodb": stack.ddb})
    resp = app.handle(Request("POST", "/v1/jobs", headers=HEADERS, body=json.dumps(video("sd15")).encode()))
    assert resp.status == 422, resp.body
    [error] = resp.body["errors"]
    assert error["field"] == "model" and "kind checkpoint" in error["message"] and "wan/ti2v" in error["message"]
    assert stack.ddb.scan(TableName=stack.table)["Count"] == 0 and stack.counts() == (0, 0)
    ok = app.handle(Request("POST", "/v1/jobs", headers=HEADERS, body=json.dumps(video()).encode()))
    assert ok.status == 202, ok.body
    assert stack.counts()[0] == 1
