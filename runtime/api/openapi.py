"""The published OpenAPI 3.1 document (served at ``GET /v1/openapi.json``).

The job request schemas are generated from the pydantic models that validate requests
(``runtime.jobs.models``): ``JobRequest`` is a ``oneOf`` of one model per task, each with ``task`` as a const
(optional in the txt2img variant: a body without ``task`` is txt2img), so any body matches at most one
variant. Header patterns are the ones the app applies (``runtime.api.request_headers``); ``API_VERSION`` is
the API's version, which the app's health route reports. ``createJob`` links to ``getJob`` and
``cancelJob`` through the returned ``id``, which schema-driven tools follow for stateful tests
(tests/integration/test_api_schemathesis.py).
``python -m runtime.api.openapi`` prints it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Union

from pydantic import TypeAdapter

from runtime.api.request_headers import IDEMPOTENCY_KEY_PATTERN
from runtime.jobs import models as m
from runtime.jobs.schema import NULL_IS_A_VALUE

API_VERSION = "1.0.0"  # info.version of the document; GET /v1/health reports it too
_REF = "#/components/schemas/{model}"


@lru_cache(maxsize=1)
def _request_schemas() -> dict[str, Any]:
    """``JobRequest`` and every schema it refers to, generated from the validating models."""
    variants = m.job_request_models()
    adapter = TypeAdapter(Union[tuple(variants)])  # noqa: UP007
    schema = adapter.json_schema(ref_template=_REF)
    defs = schema.pop("$defs")
    # oneOf, without an OpenAPI ``discriminator``: OpenAPI 3.1 requires the discriminating property in every
    # payload, and a body without ``task`` is a txt2img job. Each variant's ``task`` is a const (the txt2img
    # one optional), so any body matches at most one variant.
    schema = {"oneOf": schema.pop("anyOf"), **schema}
    schema["description"] = ("A job. `task` selects the inputs (txt2img when left out); every bound here is "
                             "the validator's own.")
    for name, model in defs.items():
        level = "envelope" if name.endswith("Job") else "inputs" if name.endswith("Inputs") else None
        if level:
            _nulls_mean_defaults(model, NULL_IS_A_VALUE[level])
    return {"JobRequest": schema, **defs}


def _nulls_mean_defaults(model: dict[str, Any], null_is_a_value: tuple[str, ...]) -> None:
    """Publish what the validator does: an optional field sent as ``null`` gets its default (schema.py)."""
    required = set(model.get("required", ()))
    for name, prop in model.get("properties", {}).items():
        if name in required or name in null_is_a_value or _allows_null(prop):
            continue
        if isinstance(prop.get("type"), str) and not {"enum", "const"} & set(prop):
            prop["type"] = [prop["type"], "null"]
        else:
            outer = {k: prop.pop(k) for k in ("title", "default", "description") if k in prop}
            inner = dict(prop)
            prop.clear()
            prop.update({"anyOf": [inner, {"type": "null"}], **outer})
        prop["description"] = (prop.get("description", "") + "; null: the default").lstrip("; ")


def _allows_null(prop: dict[str, Any]) -> bool:
    kinds = prop.get("type")
    return (kinds == "null" or (isinstance(kinds, list) and "null" in kinds)
            or any(_allows_null(p) for p in prop.get("anyOf", ())))


def _schemas() -> dict[str, Any]:
    return {
        **_request_schemas(),
        "Job": {"type": "object", "required": ["id", "status", "created_at", "urls"], "properties": {
            "id": {"type": "string", "pattern": "^j_[0-9A-Z]{26}$"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]},
            "model": {"type": "string"}, "task": {"type": "string"}, "inputs": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "completed_at": {"type": ["string", "null"], "format": "date-time"},
            "attempts": {"type": "integer"}, "cancel_requested": {"type": "boolean"},
            # issue 44: labels as sent, and when a DELETE removed the job's data (a tombstone)
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "deleted_at": {"type": "string", "format": "date-time"},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {
                "url": {"type": "string", "format": "uri"}, "content_type": {"type": "string"},
                "generator": {"type": ["string", "null"],
                              "description": "backend that made the file; test-pattern is not a model output"},
                "seed": {"type": "integer", "description": (  # issue 44
                    "the seed that made this output, where one is known (docs/api.md 'Output formats and the seed "
                    "used')")},
                "video": {"type": "object", "description": "a video output's facts (txt2video, img2video)",
                          "properties": {"format": {"type": "string", "enum": ["mp4", "webm", "webp", "gif"]},
                                         "frames": {"type": "integer"}, "fps": {"type": "integer"},
                                         "duration_s": {"type": "number"}, "width": {"type": "integer"},
                                         "height": {"type": "integer"}, "bytes": {"type": "integer"}}}}}},
            "timings": {"type": "object", "properties": {k: {"type": "number"} for k in (
                "queue_wait_ms", "model_load_ms", "inference_ms", "upload_ms", "total_ms")}},
            "cost": {"type": "object", "description": "GPU-seconds and USD of every settled attempt (failed and "
                     "handed-back ones too); prices from the stack's table or the spot price (docs/api.md)",
                     "properties": {"gpu_seconds": {"type": "number"}, "usd": {"type": "number"},
                                    "breakdown": {"type": "object", "properties": {
                                        "phases": {"type": "object"}, "attempts": {"type": "array"}}}}},
            "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"},
                                                                  "message": {"type": "string"}}},
            "queue": {"type": "object", "description": "only while queued; approximate", "properties": {
                "waiting_seconds": {"type": "number"}, "queue_depth": {"type": "integer"},
                "in_progress": {"type": ["integer", "null"]}, "estimated_wait_seconds": {"type": "number"}}},
            "webhook": {"type": ["string", "null"]}, "webhook_events_filter": {"type": "array"},
            "progress": {"type": ["object", "null"], "description": "only while running: its latest progress "
                         "event (GET /v1/jobs/{id}/events)"},
            "urls": {"type": "object", "properties": {"get": {"type": "string"}, "cancel": {"type": "string"}}},
            # issue 44 (lane D): deadlines
            "deadline_at": {"type": ["string", "null"], "format": "date-time",
                            "description": "the job must start by then, else it ends canceled (reason deadline)"},
            "cancel_reason": {"type": ["string", "null"], "enum": ["client", "deadline", None],
                              "description": "why a canceled job was canceled: client (a cancel request) or "
                                             "deadline (not started in time; not run, not charged)"},
            "priority": {"type": "string", "enum": ["high", "normal", "low"],
                         "description": "the job's class; within the key's max_priority"}}},
        "Problem": {"type": "object", "required": ["type", "title", "status"], "properties": {
            "type": {"type": "string", "format": "uri"}, "title": {"type": "string"}, "status": {"type": "integer"},
            "detail": {"type": "string"}, "errors": {"type": "array", "items": {
                "type": "object", "properties": {"field": {"type": "string"}, "rule": {"type": "string"},
                                                 "message": {"type": "string"}}}}}},
        "Models": {"type": "object", "properties": {"source": {"type": "string", "enum": ["manifest", "config"]},
                                                     "models": {"type": "array", "items": {"type": "object"}}}},
    }


def _problem(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_LINKS = {
    "getJob": {"operationId": "getJob", "parameters": {"id": "$response.body#/id"},
               "description": "the job just created (its urls.get)"},
    "cancelJob": {"operationId": "cancelJob", "parameters": {"id": "$response.body#/id"},
                  "description": "cancel the job just created (its urls.cancel)"},
}


def _job(description: str, links: bool = False) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Job"}
    out: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": schema}}}
    if links:
        out["links"] = _LINKS
    return out


_AUTH_ERRORS = {"401": _problem("no credentials"),
                "403": _problem("credentials not valid, or (POST /v1/jobs) a priority above the key's max_priority"),
                "429": _problem("rate limit, daily quota or budget, too many failed authentications, or (POST "
                                "/v1/jobs) overloaded: the expected wait exceeds the job's deadline or the stack's "
                                "bound, nothing created, estimate in the body (see Retry-After)"),
                "503": _problem("a dependency is unavailable; retry after Retry-After")}
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
_JSON_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {"post": {
            "operationId": "createJob", "summary": "Create a job (async, or sync with Prefer: wait=N)",
            "parameters": [
                {"name": "Prefer", "in": "header", "schema": {"type": "string"}, "example": "wait=20",
                 "description": "RFC 7240 wait=N: wait up to N seconds (at most 25) for the job to finish; "
                                "other preferences are ignored"},
                {"name": "Idempotency-Key", "in": "header",
                 "schema": {"type": "string", "pattern": IDEMPOTENCY_KEY_PATTERN, "maxLength": 255},
                 "description": "same key + same body -> same job (24 h); same key + other body -> 422; while "
                                "the first request is still in flight -> 409"}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/JobRequest"}}}},
            "responses": {"200": _job("finished within the wait", links=True),
                          "202": _job("accepted; poll urls.get", links=True),
                          "400": _problem("malformed JSON or header"),
                          "409": _problem("the first request with this Idempotency-Key is still in flight"),
                          "413": _problem("body, or the queue message it makes, too large"),
                          "415": _problem("not JSON"), "422": _problem("a rule is broken (field and rule named)"),
                          **_AUTH_ERRORS}},
            "get": {
            "operationId": "listJobs", "summary": "The caller's jobs, newest first",
            "parameters": [
                {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 100,
                                                            "default": 20}},
                {"name": "status", "in": "query", "schema": {"type": "string"}, "example": "queued,running",
                 "description": "one status, or several separated by commas"},
                {"name": "cursor", "in": "query", "schema": {"type": "string"},
                 "description": "next_cursor of the previous page"},
                _METADATA_FILTER],  # issue 44
            "responses": {"200": {"description": "a page of jobs", "content": {"application/json": {"schema": {
                "type": "object", "required": ["jobs", "next_cursor"], "properties": {
                    "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                    "next_cursor": {"type": ["string", "null"],
                                    "description": "null on the last page"}}}}}},
                          "422": _problem("a query parameter is wrong (named in errors[].field)"),
                          **_AUTH_ERRORS}}},
        "/v1/jobs/{id}": {"get": {
            "operationId": "getJob", "summary": "Get a job", "parameters": [_JOB_ID],
            "responses": {"200": _job("the job"), "404": _problem("no such job for this key"), **_AUTH_ERRORS}},
            **_delete_job()},  # issue 44
        "/v1/jobs/{id}/cancel": {"post": {
            "operationId": "cancelJob", "summary": "Cancel a job", "parameters": [_JOB_ID],
            "responses": {"200": _job("queued jobs are canceled at once; running ones get cancel_requested"),
                          "404": _problem("no such job for this key"), **_AUTH_ERRORS}}},
        "/v1/jobs/{id}/events": _events_path(),
        "/v1/fleet": _fleet_path(),
        "/v1/quotes": {"post": {
            "operationId": "createQuote",
            "summary": "Expected wait and cost of a job body on the fleet now (nothing is created)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/JobRequest"}}}},
            "responses": {"200": {"description": "the quote", "content": {"application/json": {"schema": {
                "type": "object", "properties": {k: {"type": "object"} for k in (
                    "wait_seconds", "gpu_seconds", "cost_usd", "fleet", "basis")}}}}},
                          "400": _problem("malformed JSON"), "413": _problem("body too large"),
                          "415": _problem("not JSON"), "422": _problem("a rule broken, as for a create"),
                          **_AUTH_ERRORS}}},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "Models this fleet serves",
            "responses": {"200": {"description": "models", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Models"}}}}, **_AUTH_ERRORS}}},
        "/v1/health": {"get": {"operationId": "health", "summary": "Liveness", "security": [],
                               "responses": {"200": {"description": "ok", "content": _JSON_OBJECT}}}},
        "/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1 document",
                                                           "content": _JSON_OBJECT}}}},
    }


def _fleet_path() -> dict[str, Any]:
    """GET /v1/fleet (issue 43; runtime/api/fleet.py, docs/api.md "Key scopes"): operator keys only."""
    nullable_number = {"type": ["number", "null"]}
    queue = {"type": "object", "required": ["name", "depth", "in_flight", "oldest_age_seconds"], "properties": {
        "name": {"type": "string"}, "depth": {"type": ["integer", "null"]}, "in_flight": {"type": ["integer", "null"]},
        "oldest_age_seconds": nullable_number}}
    return {"get": {
        "operationId": "getFleet", "summary": "The fleet's queues: depth and oldest age (operator keys only)",
        "responses": {"200": {"description": "one entry per queue", "content": {"application/json": {"schema": {
            "type": "object", "required": ["time", "queues"], "properties": {
                "time": {"type": "number"}, "queues": {"type": "array", "items": queue}}}}}},
                      **_AUTH_ERRORS,
                      "403": _problem("the key is not valid, or its scope is not operator (forbidden-scope)")}}}


def _events_path() -> dict[str, Any]:
    """GET /v1/jobs/{id}/events (issue 38; runtime/api/job_events_feed.py, docs/api.md "Job events")."""
    event = {"type": "object", "required": ["cursor", "kind"], "properties": {
        "cursor": {"type": "string"}, "kind": {"type": "string", "enum": ["status", "progress"]},
        "attempt": {"type": ["integer", "null"]}, "at": {"type": ["number", "null"]},
        "status": {"type": "string"}, "stage": {"type": "string"}, "step": {"type": "integer"},
        "steps": {"type": "integer"}, "frames_done": {"type": "integer"}, "frames": {"type": "integer"},
        "percent": {"type": "number"}, "eta_s": {"type": "number"}}}
    return {"get": {
        "operationId": "jobEvents", "summary": "A job's events after a cursor, long-polled",
        "parameters": [_JOB_ID,
                       {"name": "after", "in": "query", "schema": {"type": "string", "pattern": r"^\d{6}\.\d{6}$"},
                        "description": "next_cursor of the previous answer; absent: from the first event"},
                       {"name": "wait", "in": "query", "schema": {"type": "number", "minimum": 0, "maximum": 20,
                                                                  "default": 10},
                        "description": "seconds to wait when nothing is new after the cursor"}],
        "responses": {"200": {"description": "the events after the cursor, oldest first (none after the final "
                                             "status)", "content": {"application/json": {"schema": {
                                                 "type": "object", "required": ["events", "next_cursor", "final"],
                                                 "properties": {"job_id": {"type": "string"},
                                                                "events": {"type": "array", "items": event},
                                                                "next_cursor": {"type": ["string", "null"]},
                                                                "final": {"type": "boolean"}}}}}},
                      "400": _problem("after is not a cursor of this job, or wait is out of range"),
                      "404": _problem("no such job for this key"), **_AUTH_ERRORS}}}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "genai-fleet job API", "version": API_VERSION,
                 "description": "Framework-agnostic image/video generation jobs. See docs/api.md."},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": _paths(),
        "components": {
            "schemas": _schemas(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "API key (api-key mode)"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
                "sigv4": {"type": "apiKey", "in": "header", "name": "Authorization",
                          "description": "AWS SigV4 (iam mode; execute-api:Invoke)"}},
        },
    }


if __name__ == "__main__":
    print(json.dumps(document(), indent=2))


# -- issue 44 (lane F): label filter and deletion ----------------------------------------------------------------------
_METADATA_FILTER = {
    "name": "metadata", "in": "query", "style": "deepObject", "explode": True,
    "schema": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}},
    "description": "metadata.<key>=<value>: only jobs whose label <key> has that value (each given must match); "
                   "a filter over the caller's jobs, not an index (docs/api.md 'Labels')"}


def _delete_job() -> dict[str, Any]:
    return {"delete": {
        "operationId": "deleteJob", "summary": "Delete a final job's outputs, inputs and prompt; keep a tombstone",
        "parameters": [_JOB_ID],
        "responses": {"200": _job("the tombstone: id, status, times, cost and deleted_at; the same on a second call"),
                      "404": _problem("no such job for this key"),
                      "409": _problem("the job is not final yet: cancel it, then delete it"),
                      "503": _problem("the objects could not be deleted now; nothing was removed from the record"),
                      **_AUTH_ERRORS}}}
