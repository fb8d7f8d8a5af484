"""Property test: no request -- any method, path, headers or body -- makes the API answer 5xx.

Runs the app in-process over the same event adapter Lambda uses (handle_event), with the real
JobStore on moto and an in-memory queue, so every layer but the socket is exercised.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.api.app import ApiApp, ApiOptions
from runtime.api.auth import StaticKeyStore, generate_key
from runtime.api.handler import handle_event
from runtime.jobs.store import JobStore
from runtime.queues.memory import InMemoryQueue

pytestmark = pytest.mark.integration
KEY, RECORD = generate_key("fuzz")

# Text may hold lone surrogates (json.dumps writes them as \\ud800 escapes): finding 1 of issue 16.
any_text = st.text(max_size=30) | st.text(st.sampled_from(["\ud800", "\udfff", "a", "\U0001F600", "山"]), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | any_text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=20)
field_names = st.sampled_from(["model", "task", "inputs", "webhook", "webhook_events_filter", "prompt", "x"])
inputs = st.dictionaries(st.sampled_from(["prompt", "width", "height", "steps", "guidance", "seed", "num_outputs",
                                          "image", "mask", "strength", "frames", "fps", "workflow", "images",
                                          "scheduler", "negative_prompt"]), json_values, max_size=6)
job_bodies = st.fixed_dictionaries({}, optional={
    "model": st.sampled_from(["sdxl-base-1.0", "", "A", "x/y/z"]) | json_values,
    "task": st.sampled_from(["txt2img", "img2img", "txt2video", "img2video", "comfyui-workflow"]) | json_values,
    "inputs": inputs | json_values,
    "webhook": st.sampled_from(["https://hooks.example.com/h", "http://169.254.169.254/", "http://[::1]/",
                                "ftp://x", "http://0x7f.1/"]) | json_values,
    "webhook_events_filter": st.lists(st.sampled_from(["start", "output", "completed", "logs"])) | json_values,
}) | st.dictionaries(field_names, json_values, max_size=5)
bodies = (job_bodies.map(lambda b: json.dumps(b).encode()) | st.binary(max_size=200)
          | json_values.map(lambda v: json.dumps(v).encode()))
paths = st.sampled_from(["/v1/jobs", "/v1/jobs/", "/v1/jobs/j_00000000000000000000000000", "/v1/jobs/abc/cancel",
                         "/v1/models", "/v1/health", "/v1/openapi.json", "/", "/v2/jobs", "/v1/jobs/%00"]) | \
    st.text(max_size=40).map(lambda t: "/" + t)
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
header_values = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
headers = st.fixed_dictionaries({}, optional={
    "authorization": st.sampled_from([f"Bearer {KEY}", "Bearer x", "Basic abc", ""]) | header_values,
    "x-api-key": st.just(KEY) | header_values,
    "content-type": st.sampled_from(["application/json", "text/plain", "application/problem+json"]) | header_values,
    "prefer": st.sampled_from(["wait=0", "wait=1", "respond-async", "wait=999999"]) | header_values,
    "idempotency-key": header_values,
})


@pytest.fixture(scope="module")
def app(moto_endpoint):
    import boto3

    from runtime.jobs.store import create_table

    ddb = boto3.client("dynamodb", endpoint_url=moto_endpoint, region_name="us-east-1")
    create_table(ddb, "fuzz-jobs")
    return ApiApp(JobStore("fuzz-jobs", ddb), InMemoryQueue(),
                  ApiOptions(auth_mode="api-key", max_wait_seconds=0.2, poll_interval_seconds=0.05,
                             quota_per_day=10_000), keys=StaticKeyStore({RECORD.key_id: RECORD}),
                  sleep=lambda s: None)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=methods, path=paths, hdrs=headers, body=bodies, b64=st.booleans())
def test_no_input_yields_a_5xx(app, method, path, hdrs, body, b64):
    event = {"version": "2.0", "rawPath": path, "headers": hdrs,
             "requestContext": {"http": {"method": method, "path": path}, "requestId": "fuzz"},
             "body": base64.b64encode(body).decode() if b64 else body.decode("utf-8", "replace"),
             "isBase64Encoded": b64}
    result = handle_event(event, app)
    assert result["statusCode"] < 500, (result, event)
    if result["statusCode"] >= 400:
        problem = json.loads(result["body"])
        assert problem["status"] == result["statusCode"] and problem["title"]
