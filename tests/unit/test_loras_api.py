"""LoRAs at the API (issue 40): the typed spec's shape rules and the catalog's rules, each a 422 naming the field,
before anything is written or queued; the model store records a LoRA's family (genai-model-upload --family)."""

from __future__ import annotations

import json

import pytest

from runtime.api.app import ApiApp, ApiOptions, Request
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.jobs.errors import ValidationError
from runtime.jobs.loras import model_family
from runtime.jobs.models import MAX_LORA_WEIGHT, MAX_LORAS, MIN_LORA_WEIGHT
from runtime.jobs.schema import JobSpec, validate_job
from runtime.queues.memory import InMemoryQueue
from tests.unit.test_task_capabilities import NoWrites

KEY, RECORD = generate_key("loras")
HEADERS = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
CATALOG = [
    {"id": "sdxl/base-1.0", "kind": "checkpoint", "hot": True},
    {"id": "sd15/dreamshaper", "kind": "checkpoint", "hot": False},
    {"id": "sdxl-turbo", "kind": "checkpoint", "hot": False},  # no family prefix, none recorded
    {"id": "sdxl-turbo-2", "kind": "checkpoint", "hot": False, "family": "sdxl"},  # family recorded at upload
    {"id": "sdxl/pixel-art", "kind": "lora", "hot": False},
    {"id": "sdxl/ink", "kind": "lora", "hot": False},
    {"id": "sd15/film", "kind": "lora", "hot": False},
    {"id": "grain", "kind": "lora", "hot": False, "family": "sdxl"},  # family recorded at upload
    {"id": "orphan", "kind": "lora", "hot": False},  # no family at all
    {"id": "sdxl/vae-fix", "kind": "vae", "hot": False},
]


class Catalog:
    def list_models(self):
        return "manifest", CATALOG


def _app(enforce: bool = False) -> tuple[ApiApp, InMemoryQueue]:
    queue = InMemoryQueue()
    return ApiApp(store=NoWrites(), producer=queue, options=ApiOptions(auth_mode="api-key",
                                                                      enforce_known_models=enforce),
                  keys=StaticKeyStore({RECORD.key_id: RECORD}), models=Catalog()), queue


def _job(loras, model="sdxl/base-1.0", task="txt2img"):
    inputs = {"prompt": "a fox", "loras": loras}
    if task in ("img2img", "img2video"):
        inputs["image"] = "https://example.com/a.png"
    return {"model": model, "task": task, "inputs": inputs}


def _refused(body, enforce: bool = False) -> list[dict]:
    app, queue = _app(enforce)
    resp = app.handle(Request("POST", "/v1/jobs", headers=HEADERS, body=json.dumps(body).encode()))
    assert resp.status == 422, resp.body
    assert len(queue) == 0
    return resp.body["errors"]


@pytest.mark.parametrize(("loras", "field", "rule", "words"), [
    ([{"model": "sdxl/nope"}], "inputs.loras.0.model", "unknown-model", "sdxl/nope"),
    ([{"model": "sdxl/pixel-art"}, {"model": "sd15/film"}], "inputs.loras.1.model", "family-mismatch", "sd15"),
    ([{"model": "sdxl/vae-fix"}], "inputs.loras.0.model", "not-a-lora", "vae"),
    ([{"model": "orphan"}], "inputs.loras.0.model", "lora-family", "--family"),
    ([{"model": "sdxl/ink", "weight": MAX_LORA_WEIGHT + 0.5}], "inputs.loras.0.weight", "range", ""),
    ([{"model": "sdxl/ink", "weight": MIN_LORA_WEIGHT - 0.5}], "inputs.loras.0.weight", "range", ""),
    ([{"model": "sdxl/ink"}] * 2, "inputs.loras", "duplicate", "sdxl/ink"),
    ([{"model": f"sdxl/l{i}"} for i in range(MAX_LORAS + 1)], "inputs.loras", "max-items", str(MAX_LORAS)),
    ([{"model": "sdxl/ink", "scale": 1}], "inputs.loras.0.scale", "unknown-field", ""),
])
def test_bad_loras_are_a_422_naming_the_field_before_anything_is_queued(loras, field, rule, words):
    errors = _refused(_job(loras))
    assert [(e["field"], e["rule"]) for e in errors] == [(field, rule)], errors
    assert words in errors[0]["message"]


def test_a_jobs_model_must_be_a_base_model_not_a_lora():
    """With the catalog read (known models enforced, or LoRAs named), a LoRA id as ``model`` is refused."""
    (error,) = _refused({"model": "sdxl/pixel-art", "inputs": {"prompt": "p"}}, enforce=True)
    assert (error["field"], error["rule"]) == ("model", "not-a-base-model")
    assert "inputs.loras" in error["message"]
    (error,) = _refused(_job([{"model": "sdxl/ink"}], model="sdxl/pixel-art"))
    assert (error["field"], error["rule"]) == ("model", "not-a-base-model")


def test_a_model_of_no_family_takes_no_lora_and_a_recorded_family_counts():
    (error,) = _refused(_job([{"model": "sdxl/ink"}], model="sdxl-turbo"))
    assert error["rule"] == "family-mismatch" and "of no family" in error["message"]
    catalog = {m["id"]: m for m in CATALOG}
    for model, lora in (("sdxl-turbo-2", "sdxl/ink"), ("sdxl/base-1.0", "grain")):
        assert validate_job(_job([{"model": lora, "weight": 0.7}], model=model), model_catalog=catalog)


@pytest.mark.parametrize("task", ["txt2img", "img2img", "txt2video", "img2video"])
def test_good_loras_pass_on_every_image_and_video_task_and_reach_the_typed_spec(task):
    body = _job([{"model": "sdxl/pixel-art", "weight": 0.8}, {"model": "sdxl/ink"}], task=task)
    catalog = {m["id"]: m for m in CATALOG}
    spec = validate_job(body, model_catalog=catalog)
    assert spec["inputs"]["loras"] == [{"model": "sdxl/pixel-art", "weight": 0.8}, {"model": "sdxl/ink", "weight": 1.0}]
    typed = JobSpec.parse(spec)
    assert [(lora.model, lora.weight) for lora in typed.inputs.loras] == [("sdxl/pixel-art", 0.8), ("sdxl/ink", 1.0)]
    assert typed.to_dict() == spec


def test_a_workflow_has_no_loras_field_and_a_job_without_loras_reads_as_before():
    with pytest.raises(ValidationError) as err:
        validate_job({"model": "m", "task": "comfyui-workflow",
                      "inputs": {"workflow": {"1": {"class_type": "K"}}, "loras": [{"model": "sdxl/ink"}]}})
    assert [p.field for p in err.value.problems] == ["inputs.loras"]
    assert "loras" not in validate_job({"model": "m", "inputs": {"prompt": "p"}})["inputs"]
    assert "loras" not in validate_job({"model": "m", "inputs": {"prompt": "p", "loras": []}})["inputs"]


def test_family_is_recorded_or_the_id_prefix():
    assert model_family("sdxl/pixel-art") == "sdxl"
    assert model_family("grain", {"family": "sdxl"}) == "sdxl"
    assert model_family("grain") is None


def test_the_upload_records_a_family_and_the_models_list_shows_it(moto_endpoint, tmp_path):
    import boto3

    from runtime.api.models import ManifestModels
    from tools import model_upload

    (tmp_path / "grain.safetensors").write_bytes(b"lora weights")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x")
    s3.create_bucket(Bucket="store-40")
    rc = model_upload.main([str(tmp_path / "grain.safetensors"), "--bucket", "store-40", "--model-id", "grain",
                            "--kind", "lora", "--family", "sdxl", "--endpoint-url", moto_endpoint, "--quiet"])
    assert rc == 0
    [entry] = ManifestModels(s3, "store-40").list_models()[1]
    assert entry["id"] == "grain" and entry["kind"] == "lora" and entry["family"] == "sdxl"
    with pytest.raises(SystemExit):
        model_upload.parse_args([str(tmp_path), "--bucket", "b", "--model-id", "g", "--kind", "lora",
                                 "--family", "SDXL!"])
