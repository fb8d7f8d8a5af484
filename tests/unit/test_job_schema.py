"""Job spec validation: defaults, every rule names its field, and the message format round-trips."""

from __future__ import annotations

import pytest

from runtime.jobs import ids
from runtime.jobs.errors import ValidationError
from runtime.jobs.schema import JobSpec, fingerprint, parse_json_body, validate_job
from runtime.queues import MessageFormatError, QueueMessage
from runtime.queues.memory import InMemoryQueue


def _problems(body, **kwargs):
    with pytest.raises(ValidationError) as info:
        validate_job(body, **kwargs)
    return {(p.field, p.rule) for p in info.value.problems}


def test_minimal_txt2img_gets_defaults():
    spec = validate_job({"model": "sdxl-base-1.0", "inputs": {"prompt": "a cat"}})
    assert spec["task"] == "txt2img"
    assert spec["inputs"] == {"prompt": "a cat", "negative_prompt": "", "width": 1024, "height": 1024,
                              "steps": 30, "guidance": 7.0, "seed": None, "num_outputs": 1}
    assert spec["webhook"] is None and spec["webhook_events_filter"] == ["completed"]


@pytest.mark.parametrize(("inputs", "field", "rule"), [
    ({"prompt": "x", "width": 513}, "inputs.width", "multiple-of-8"),
    ({"prompt": "x", "height": 4096}, "inputs.height", "range"),
    ({"prompt": "x", "steps": 0}, "inputs.steps", "range"),
    ({"prompt": "x", "steps": "ten"}, "inputs.steps", "type"),
    ({"prompt": "x", "steps": True}, "inputs.steps", "type"),
    ({"prompt": "x", "guidance": 31}, "inputs.guidance", "range"),
    ({"prompt": "x", "seed": -1}, "inputs.seed", "range"),
    ({"prompt": "x", "num_outputs": 9}, "inputs.num_outputs", "range"),
    ({"prompt": "x" * 4001}, "inputs.prompt", "max-length"),
    ({"prompt": "   "}, "inputs.prompt", "required"),
    ({}, "inputs.prompt", "required"),
    ({"prompt": "x", "colour": "red"}, "inputs.colour", "unknown-field"),
    ({"prompt": "x", "scheduler": "<script>"}, "inputs.scheduler", "pattern"),
])
def test_each_rule_names_field_and_rule(inputs, field, rule):
    assert (field, rule) in _problems({"model": "m", "inputs": inputs})


def test_all_problems_reported_at_once():
    found = _problems({"model": "Bad Model", "task": "paint", "inputs": [], "extra": 1})
    assert {("model", "pattern"), ("task", "enum"), ("inputs", "type"), ("extra", "unknown-field")} <= found


def test_img2img_needs_image_and_checks_urls():
    assert ("inputs.image", "required") in _problems({"model": "m", "task": "img2img", "inputs": {"prompt": "x"}})
    found = _problems({"model": "m", "task": "img2img",
                       "inputs": {"prompt": "x", "image": "https://169.254.169.254/latest/meta-data/"}})
    assert ("inputs.image", "url-link-local-address") in found
    spec = validate_job({"model": "m", "task": "img2img",
                         "inputs": {"prompt": "x", "image": "data:image/png;base64,iVBORw0KGgo="}})
    assert spec["inputs"]["strength"] == 0.75 and spec["inputs"]["width"] is None


def test_inline_image_too_large_is_refused():
    big = "data:image/png;base64," + "A" * 200_000
    assert ("inputs.image", "max-length") in _problems(
        {"model": "m", "task": "img2img", "inputs": {"prompt": "x", "image": big}})


def test_txt2video_and_workflow():
    spec = validate_job({"model": "m", "task": "txt2video", "inputs": {"prompt": "x", "frames": 24}})
    assert spec["inputs"]["frames"] == 24 and spec["inputs"]["fps"] == 8 and spec["inputs"]["width"] == 512
    wf = {"3": {"class_type": "KSampler", "inputs": {}}}
    spec = validate_job({"model": "m", "task": "comfyui-workflow", "inputs": {"workflow": wf, "seed": 5}})
    assert spec["inputs"] == {"workflow": wf, "seed": 5}
    assert ("inputs.workflow.3", "node") in _problems(
        {"model": "m", "task": "comfyui-workflow", "inputs": {"workflow": {"3": {"inputs": {}}}}})


def test_webhook_rules():
    ok = validate_job({"model": "m", "inputs": {"prompt": "x"}, "webhook": "https://hooks.example.com/a",
                       "webhook_events_filter": ["completed", "start"]})
    assert ok["webhook_events_filter"] == ["start", "completed"]
    assert ("webhook", "url-loopback-address") in _problems(
        {"model": "m", "inputs": {"prompt": "x"}, "webhook": "http://127.0.0.1:9/hook"})
    assert ("webhook", "url-scheme") in _problems(
        {"model": "m", "inputs": {"prompt": "x"}, "webhook": "ftp://example.com/x"})
    assert ("webhook_events_filter", "enum") in _problems(
        {"model": "m", "inputs": {"prompt": "x"}, "webhook_events_filter": ["logs"]})
    local = validate_job({"model": "m", "inputs": {"prompt": "x"}, "webhook": "http://127.0.0.1:9/hook"},
                         allow_loopback=True)
    assert local["webhook"] == "http://127.0.0.1:9/hook"


def test_known_models_restrict_model():
    assert ("model", "unknown-model") in _problems({"model": "m", "inputs": {"prompt": "x"}}, known_models={"n"})


def test_parse_json_body_malformed_is_400_kind():
    for raw in (b"", b"{", b"[1,", b"NaN", b"\xff\xfe"):
        with pytest.raises(ValidationError) as info:
            parse_json_body(raw)
        assert info.value.malformed


def test_fingerprint_ignores_key_order_and_defaults():
    a = validate_job({"model": "m", "inputs": {"prompt": "x", "steps": 30}})
    b = validate_job({"inputs": {"prompt": "x"}, "model": "m"})
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(validate_job({"model": "m", "inputs": {"prompt": "y"}}))


def test_jobspec_round_trip():
    spec = validate_job({"model": "m", "inputs": {"prompt": "x"}, "webhook": "https://e.example.com/h",
                         "webhook_events_filter": ["start"]})
    typed = JobSpec.parse(spec)
    assert typed.to_dict() == spec and typed.wants("start") and not typed.wants("completed")


def test_job_ids_sort_by_time_and_parse():
    a, b = ids.new_job_id(1_700_000_000.0), ids.new_job_id(1_700_000_001.0)
    assert a < b and ids.is_job_id(a) and not ids.is_job_id("j_../etc")
    assert abs(ids.job_id_time(a) - 1_700_000_000.0) < 0.002


def test_queue_message_round_trip_and_errors():
    msg = QueueMessage(job_id="j_X", job={"model": "m"}, enqueued_at=12.5)
    assert QueueMessage.from_json(msg.to_json()) == msg
    for bad in ("nope", '{"v": 2}', '{"v": 1, "job_id": 3, "job": {}, "enqueued_at": 1}'):
        with pytest.raises(MessageFormatError):
            QueueMessage.from_json(bad)


def test_in_memory_queue_visibility_and_dead_letter():
    now = [0.0]
    q = InMemoryQueue(visibility_timeout=10, max_receive_count=2, clock=lambda: now[0])
    q.send(QueueMessage("j_1", {}, 0.0))
    got = q.receive(wait_seconds=0)
    assert len(got) == 1 and got[0].receive_count == 1
    assert q.receive(wait_seconds=0) == []
    now[0] = 11
    again = q.receive(wait_seconds=0)
    assert again[0].receive_count == 2
    q.release(again[0])
    assert q.receive(wait_seconds=0) == [] and len(q.dead_letters) == 1
    q.send(QueueMessage("j_2", {}, 0.0))
    job = q.receive(wait_seconds=0)[0]
    q.ack(job)
    assert len(q) == 0


def test_lone_surrogates_anywhere_are_refused_by_field():
    """JSON may carry \\ud800 escapes; they cannot be encoded, so they are a 422 naming the place (issue 16)."""
    body = {"model": "sdxl-base-1.0", "task": "comfyui-workflow", "inputs": {
        "workflow": {"1": {"class_type": "X", "inputs": {"list": ["ok", "\udc00"], "k\ud800": 1}}},
        "images": {"a.png": "https://example.com/\ud800.png"}}}
    with pytest.raises(ValidationError) as info:
        validate_job(body)
    got = {(p.field, p.rule) for p in info.value.problems}
    assert got == {("inputs.workflow.1.inputs.list[1]", "encoding"), ("inputs.workflow.1.inputs.k\\ud800", "encoding"),
                   ("inputs.images.a.png", "encoding")}
    assert validate_job({"model": "m", "inputs": {"prompt": "\U0001F600 山"}})["inputs"]["prompt"] == "\U0001F600 山"
