"""Schema-driven fuzzing of the API with schemathesis, from the published OpenAPI document (issue 16).

A stateful run follows the document's links (create -> get / cancel) against the local HTTP server with the
real handler, JobStore and SQS producer on moto. Every response must pass not-a-server-error and the
conformance checks (status code, content type, response schema, documented headers). The run is bounded
(examples and steps) and must create at least one job, which proves the document lets a tool build a
valid create request. Positive data only: bodies the document allows; made-up ids still exercise 404s.
"""

from __future__ import annotations

import uuid

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app
from runtime.api.openapi import document
from runtime.jobs.events import create_events_table

pytestmark = pytest.mark.integration
KEY, _ = generate_key("schemathesis")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]


@pytest.fixture
def served_schema(moto_endpoint, job_table, sqs_queue, aws_clients):
    events = f"events-{uuid.uuid4().hex[:8]}"  # the job event log: GET /v1/jobs/{id}/events runs for real
    create_events_table(aws_clients("dynamodb"), events)
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(KEY,), endpoint_url=moto_endpoint,
                    region="us-east-1", max_wait_seconds=0.0, event_table=events)
    app = build_app(cfg)
    app.options.read_rate_per_second = None  # one key reads fast here; the read limit has its own tests (abuse)
    with LocalApiServer(app) as server:
        schema = schemathesis.openapi.from_dict(document())
        schema.config.update(base_url=server.url, headers={"Authorization": f"Bearer {KEY}"}, request_timeout=30)
        schema.config.generation.update(modes=["positive"], max_examples=40)
        yield schema, app


def test_stateful_fuzzing_finds_no_server_error_and_no_conformance_failure(served_schema, aws_clients, sqs_queue):
    schema, _ = served_schema
    created: list[str] = []
    statuses: list[tuple[str, int]] = []

    class Machine(schema.as_state_machine()):
        def before_call(self, case):
            _fresh_idempotency_key(case)

        def after_call(self, response, case):
            super().after_call(response, case)
            statuses.append((case.operation.label, response.status_code))
            if case.operation.label == "POST /v1/jobs" and response.status_code in (200, 202):
                created.append(response.json()["id"])

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, checks=CHECKS, transport_kwargs=kwargs or None)

    Machine.run(settings=hypothesis.settings(
        max_examples=25, stateful_step_count=6, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate]))
    assert created, f"no valid create request was generated: {sorted(set(statuses))}"
    assert all(status < 500 for _, status in statuses)
    linked = {label for label, status in statuses if status == 200 and "{id}" in label}
    assert linked, "links from create to get/cancel were never followed"
    attrs = aws_clients("sqs").get_queue_attributes(
        QueueUrl=sqs_queue, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])
    assert sum(int(v) for v in attrs["Attributes"].values()) == len(set(created))  # each created job sent once


def _fresh_idempotency_key(case) -> None:
    """Keys are unique per request, so no answer depends on what earlier examples sent (hypothesis replays a
    choice sequence and requires the same behaviour); replays and conflicts have their own tests."""
    key = (case.headers or {}).get("Idempotency-Key")
    if key is not None:
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"


def _exercise(operation, seen: dict[str, set[int]]) -> None:
    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(max_examples=8, deadline=None, derandomize=True, database=None,
                         suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
    def exercise(case):
        _fresh_idempotency_key(case)
        response = case.call()
        seen.setdefault(operation.label, set()).add(response.status_code)
        case.validate_response(response, checks=CHECKS)

    exercise()


def test_every_operation_answers_generated_requests_within_the_document(served_schema):
    """Stateless pass over every operation (health, models and the document itself included)."""
    schema, _ = served_schema
    seen: dict[str, set[int]] = {}
    for result in schema.get_all_operations():
        _exercise(result.ok(), seen)
    assert set(seen) == {"POST /v1/jobs", "GET /v1/jobs", "GET /v1/jobs/{id}", "POST /v1/jobs/{id}/cancel",
                         "GET /v1/models", "GET /v1/health", "GET /v1/openapi.json", "GET /v1/jobs/{id}/events",
                         "POST /v1/quotes", "GET /v1/fleet", "DELETE /v1/jobs/{id}"}  # 43: fleet, 44: DELETE
    assert seen["POST /v1/quotes"] <= {200, 400, 413, 415, 422}  # issue 42: a quote is validated as a create
    assert seen["GET /v1/fleet"] == {403}  # issue 43: operator keys only; the run's key is a tenant key
    assert seen["GET /v1/health"] == {200} and seen["GET /v1/models"] == {200}
    assert 200 in seen["GET /v1/jobs"] and seen["GET /v1/jobs"] <= {200, 422}


def test_the_documentation_example_matches_exactly_one_request_variant():
    import json
    import re
    from pathlib import Path

    import jsonschema

    doc = document()
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    example = json.loads(re.search(r"### Request\n```json\n(.*?)```", text, re.S).group(1))
    resolver_doc = {"components": doc["components"], **doc["components"]["schemas"]["JobRequest"]}
    jsonschema.validate(example, resolver_doc, cls=jsonschema.Draft202012Validator)
    variants = doc["components"]["schemas"]["JobRequest"]["oneOf"]
    matches = [v["$ref"] for v in variants
               if jsonschema.Draft202012Validator({"components": doc["components"], **v}).is_valid(example)]
    assert matches == ["#/components/schemas/Txt2ImgJob"]
    # Issue 36: no OpenAPI discriminator (3.1 requires its property in every payload, and a body without
    # ``task`` is txt2img); that body matches the txt2img variant alone.
    assert "discriminator" not in doc["components"]["schemas"]["JobRequest"]
    without_task = {k: v for k, v in example.items() if k != "task"}
    assert [v["$ref"] for v in variants if jsonschema.Draft202012Validator(
        {"components": doc["components"], **v}).is_valid(without_task)] == ["#/components/schemas/Txt2ImgJob"]


def test_the_document_and_the_validator_agree_on_null_fields():
    """Issue 29's campaign (negative data): `"guidance": null` was accepted (null means the default) while the
    document said number. Every optional field sent as null: accepted by both, or refused by both."""
    import jsonschema

    from runtime.jobs.errors import ValidationError
    from runtime.jobs.schema import validate_job

    doc = document()
    schemas = doc["components"]["schemas"]
    minimal = {"txt2img": {"prompt": "p"}, "img2img": {"prompt": "p", "image": "https://example.com/a.png"},
               "txt2video": {"prompt": "p"}, "img2video": {"prompt": "p", "image": "https://example.com/a.png"},
               "comfyui-workflow": {"workflow": {"3": {"class_type": "K"}}}}
    checked = 0
    for variant in schemas["JobRequest"]["oneOf"]:
        job = schemas[variant["$ref"].rsplit("/", 1)[1]]
        prop = job["properties"]["task"]  # txt2img's is optional: a const or null
        task = next(p["const"] for p in [prop, *prop.get("anyOf", ())] if "const" in p)
        inputs_schema = schemas[job["properties"]["inputs"]["$ref"].rsplit("/", 1)[1]]
        base = {"model": "sdxl-base-1.0", "task": task, "inputs": minimal[task]}
        bodies = [{**base, field: None} for field in job["properties"] if field not in job["required"]]
        bodies += [{**base, "inputs": {**minimal[task], field: None}} for field in inputs_schema["properties"]
                   if field not in inputs_schema.get("required", ())]
        for body in bodies:
            documented = jsonschema.Draft202012Validator({"components": doc["components"], **variant}).is_valid(body)
            try:
                validate_job(body)
                accepted = True
            except ValidationError:
                accepted = False
            assert documented == accepted, (body, documented, accepted)
            checked += 1
    assert checked > 30
