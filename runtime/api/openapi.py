"""The published OpenAPI 3.1 document (served at ``GET /v1/openapi.json``).

Bounds come from ``runtime.jobs.schema`` so the document cannot drift from the validator; a unit test
checks that every route the app serves is documented. ``python -m runtime.api.openapi`` prints it.
"""

from __future__ import annotations

import json
from typing import Any

from runtime.jobs import schema as s

_SIDE = {"type": ["integer", "null"], "minimum": s.MIN_SIDE, "maximum": s.MAX_SIDE, "multipleOf": 8}
_COMMON_INPUTS: dict[str, Any] = {
    "prompt": {"type": "string", "minLength": 1, "maxLength": s.MAX_PROMPT},
    "negative_prompt": {"type": "string", "maxLength": s.MAX_PROMPT},
    "width": {**_SIDE, "description": "pixels; width x height <= 4194304"},
    "height": _SIDE,
    "steps": {"type": "integer", "minimum": 1, "maximum": s.MAX_STEPS, "default": 30},
    "guidance": {"type": "number", "minimum": 0, "maximum": s.MAX_GUIDANCE, "default": 7.0},
    "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": s.MAX_SEED},
    "num_outputs": {"type": "integer", "minimum": 1, "maximum": s.MAX_OUTPUTS, "default": 1},
    "scheduler": {"type": "string", "pattern": s.SCHEDULER.pattern},
}
_IMAGE = {"type": "string", "description": "public http(s) URL, or data:image/png|jpeg|webp;base64,... "
                                           f"(at most {s.MAX_INLINE_IMAGE_CHARS} characters)"}


def _inputs(extra: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "additionalProperties": False, "required": required,
            "properties": {**_COMMON_INPUTS, **extra}}


def _schemas() -> dict[str, Any]:
    return {
        "JobRequest": {
            "type": "object", "additionalProperties": False, "required": ["model", "inputs"],
            "properties": {
                "model": {"type": "string", "pattern": s.MODEL_ID.pattern},
                "task": {"type": "string", "enum": list(s.TASKS), "default": "txt2img"},
                "inputs": {"oneOf": [{"$ref": "#/components/schemas/Txt2ImgInputs"},
                                     {"$ref": "#/components/schemas/Img2ImgInputs"},
                                     {"$ref": "#/components/schemas/Txt2VideoInputs"},
                                     {"$ref": "#/components/schemas/WorkflowInputs"}],
                           "description": "fields depend on task"},
                "webhook": {"type": ["string", "null"], "format": "uri", "maxLength": 2048,
                            "description": "public http(s) URL; private, loopback and link-local addresses refused"},
                "webhook_events_filter": {"type": "array", "items": {"type": "string", "enum": list(s.WEBHOOK_EVENTS)},
                                          "default": list(s.DEFAULT_WEBHOOK_EVENTS)},
            },
        },
        "Txt2ImgInputs": _inputs({}, ["prompt"]),
        "Img2ImgInputs": _inputs({"image": _IMAGE, "mask": _IMAGE,
                                  "strength": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.75}},
                                 ["prompt", "image"]),
        "Txt2VideoInputs": _inputs({"frames": {"type": "integer", "minimum": 1, "maximum": s.MAX_FRAMES, "default": 16},
                                    "fps": {"type": "integer", "minimum": 1, "maximum": s.MAX_FPS, "default": 8}},
                                   ["prompt"]),
        "WorkflowInputs": {"type": "object", "additionalProperties": False, "required": ["workflow"], "properties": {
            "workflow": {"type": "object", "description": "ComfyUI API-format graph: node id -> {class_type, inputs}",
                         "additionalProperties": {"type": "object", "required": ["class_type"]}},
            "images": {"type": "object", "additionalProperties": _IMAGE, "maxProperties": s.MAX_WORKFLOW_IMAGES},
            "seed": {"type": ["integer", "null"], "minimum": 0, "maximum": s.MAX_SEED}}},
        "Job": {"type": "object", "required": ["id", "status", "created_at", "urls"], "properties": {
            "id": {"type": "string", "pattern": "^j_[0-9A-Z]{26}$"},
            "status": {"type": "string", "enum": ["queued", "running", "succeeded", "failed", "canceled"]},
            "model": {"type": "string"}, "task": {"type": "string"}, "inputs": {"type": "object"},
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": {"type": ["string", "null"], "format": "date-time"},
            "completed_at": {"type": ["string", "null"], "format": "date-time"},
            "attempts": {"type": "integer"}, "cancel_requested": {"type": "boolean"},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {
                "url": {"type": "string", "format": "uri"}, "content_type": {"type": "string"},
                "generator": {"type": ["string", "null"],
                              "description": "backend that made the file; test-pattern is not a model output"}}}},
            "timings": {"type": "object", "properties": {k: {"type": "number"} for k in (
                "queue_wait_ms", "model_load_ms", "inference_ms", "upload_ms", "total_ms")}},
            "error": {"type": ["object", "null"], "properties": {"code": {"type": "string"},
                                                                  "message": {"type": "string"}}},
            "queue": {"type": "object", "description": "only while queued; approximate", "properties": {
                "waiting_seconds": {"type": "number"}, "queue_depth": {"type": "integer"},
                "in_progress": {"type": ["integer", "null"]}, "estimated_wait_seconds": {"type": "number"}}},
            "webhook": {"type": ["string", "null"]}, "webhook_events_filter": {"type": "array"},
            "urls": {"type": "object", "properties": {"get": {"type": "string"}, "cancel": {"type": "string"}}}}},
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


def _job(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Job"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_AUTH_ERRORS = {"401": _problem("no credentials"), "403": _problem("credentials not valid"),
                "429": _problem("rate limit or daily quota exceeded (see Retry-After)"),
                "503": _problem("a dependency is unavailable; retry after Retry-After")}
_JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {"post": {
            "operationId": "createJob", "summary": "Create a job (async, or sync with Prefer: wait=N)",
            "parameters": [
                {"name": "Prefer", "in": "header", "schema": {"type": "string", "example": "wait=20"},
                 "description": "wait=N: wait up to N seconds (at most 25) for the job to finish"},
                {"name": "Idempotency-Key", "in": "header", "schema": {"type": "string", "maxLength": 255},
                 "description": "same key + same body -> same job (24 h); same key + other body -> 422"}],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/JobRequest"}}}},
            "responses": {"200": _job("finished within the wait"), "202": _job("accepted; poll urls.get"),
                          "400": _problem("malformed JSON or header"), "413": _problem("body too large"),
                          "415": _problem("not JSON"), "422": _problem("a rule is broken (field and rule named)"),
                          **_AUTH_ERRORS}}},
        "/v1/jobs/{id}": {"get": {
            "operationId": "getJob", "summary": "Get a job", "parameters": [_JOB_ID],
            "responses": {"200": _job("the job"), "404": _problem("no such job for this key"), **_AUTH_ERRORS}}},
        "/v1/jobs/{id}/cancel": {"post": {
            "operationId": "cancelJob", "summary": "Cancel a job", "parameters": [_JOB_ID],
            "responses": {"200": _job("queued jobs are canceled at once; running ones get cancel_requested"),
                          "404": _problem("no such job for this key"), **_AUTH_ERRORS}}},
        "/v1/models": {"get": {
            "operationId": "listModels", "summary": "Models this fleet serves",
            "responses": {"200": {"description": "models", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Models"}}}}, **_AUTH_ERRORS}}},
        "/v1/health": {"get": {"operationId": "health", "summary": "Liveness", "security": [],
                               "responses": {"200": {"description": "ok"}}}},
        "/v1/openapi.json": {"get": {"operationId": "openapi", "summary": "This document", "security": [],
                                     "responses": {"200": {"description": "OpenAPI 3.1 document"}}}},
    }


def document() -> dict[str, Any]:
    from runtime.api.app import API_VERSION

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
