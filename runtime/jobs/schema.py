"""The job spec shared by the API (which validates requests with it) and the worker (which reads it).

A request body (``POST /v1/jobs``) is a JSON object::

    {
      "model": "sdxl-base-1.0",               # required; lowercase 'name' or 'family/name'
      "task": "txt2img",                      # txt2img (default) | img2img | txt2video | img2video
                                              # | comfyui-workflow (the fleet's backend serves a subset)
      "inputs": {...},                        # required; fields per task, below
      "webhook": "https://example.com/hook",  # optional; public http(s) URL (see runtime.net_safety)
      "webhook_events_filter": ["completed"], # optional; subset of start, output, completed, progress
      "metadata": {"user": "u-42"}            # optional; labels (issue 44: 16 keys, key 64, value 256 chars)
    }

Inputs per task (defaults filled in by ``validate_job``; any other key is refused):

=================  ============================================================================
txt2img            prompt (1-4000 chars, required), negative_prompt (<= 4000), width/height (64-2048,
                   multiple of 8, default 1024; width*height <= 4 Mpx), steps (1-150, default 30),
                   guidance (0-30, default 7.0), seed (0 - 2**32-1, null = random), num_outputs (1-4,
                   default 1), scheduler (optional name)
img2img            txt2img's fields plus image (required) and mask (optional), strength (0-1, default 0.75).
                   Width/height default to the input image's size (null).
txt2video          txt2img's fields (width/height default 512) plus frames (1-240, default 16), fps (1-60,
                   default 8); num_outputs is 1
comfyui-workflow   workflow (required; a ComfyUI API-format graph object, <= 200 KB), images (optional
                   object name -> image), seed (optional; written into the graph by the backend)
=================  ============================================================================

Images are public http(s) URLs (address-checked here without DNS, and again with DNS by the worker
right before it fetches) or small inline uploads as ``data:image/png|jpeg|webp;base64,...`` (<= 150 KB
of text so the queue message stays under SQS's 256 KiB; larger images go by URL).

``validate_job`` returns the normalized spec (a plain dict, JSON-ready) or raises ``ValidationError``
whose ``problems`` each name the field (dotted path), a stable rule code and a message. The worker
gets the normalized spec in the queue message (docs/CONTRACTS.md) and reads it once, with the same
rules, into a typed ``JobSpec`` (``JobSpec.parse``) that travels to the backends.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError as PydanticValidationError

from runtime.jobs.errors import Problem, ValidationError
from runtime.jobs.loras import lora_problems, unserved_loras
from runtime.jobs.models import (
    DEFAULT_WEBHOOK_EVENTS,
    TASK_INPUTS,
    TASKS,
    WEBHOOK_EVENTS,
    JobEnvelope,
    JobInputs,
)

MAX_BODY_BYTES = 256_000
# ``null`` means "the default" for optional fields, except these, where null is a value of its own
# (no webhook; a random seed; the input image's size). The OpenAPI document publishes the same rule.
NULL_IS_A_VALUE = {"envelope": ("webhook",), "inputs": ("seed", "width", "height")}
# Nesting depth of a request body: the body object is level 1, a workflow node's inputs are level 5 and a
# link (``["4", 0]``) inside them level 6. Deeper bodies are refused before anything is built from them,
# so no later step (the queue message, the worker, a webhook payload) ever recurses that deep.
MAX_JSON_DEPTH = 32

# pydantic error types -> the API's stable rule codes (custom errors already carry a rule code as their type).
_RULES = {
    "missing": "required", "extra_forbidden": "unknown-field", "greater_than_equal": "range",
    "less_than_equal": "range", "greater_than": "range", "less_than": "range", "multiple_of": "multiple-of-8",
    "string_too_long": "max-length", "string_too_short": "required", "string_pattern_mismatch": "pattern",
    "literal_error": "enum", "enum": "enum", "too_long": "max-items", "too_short": "required",
    "finite_number": "range",
}
_TYPE_MESSAGES = {"int_type": "must be an integer", "int_from_float": "must be an integer",
                  "float_type": "must be a number", "string_type": "must be a string",
                  "dict_type": "must be an object", "list_type": "must be a list", "model_type": "must be an object",
                  "model_attributes_type": "must be an object", "none_required": "must be null"}


def _is_lone_surrogate_free(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _encoding_problems(value: Any, path: str, out: list[Problem], depth: int = 0) -> None:
    """Strings (and object keys) that UTF-8 cannot encode: lone surrogates such as ``"\\ud800"`` in JSON."""
    if len(out) >= 10 or depth > 64:
        return
    if isinstance(value, str):
        if not _is_lone_surrogate_free(value):
            out.append(Problem(path or "(body)", "encoding",
                               "must be valid Unicode text (a lone UTF-16 surrogate such as \\ud800 is not)"))
    elif isinstance(value, dict):
        for key, item in value.items():
            name = str(key)
            shown = name if _is_lone_surrogate_free(name) else name.encode("utf-8", "backslashreplace").decode()
            child = f"{path}.{shown[:100]}" if path else shown[:100]
            if not _is_lone_surrogate_free(name):
                out.append(Problem(child, "encoding", "field names must be valid Unicode text"))
            _encoding_problems(item, child, out, depth + 1)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _encoding_problems(item, f"{path}[{i}]", out, depth + 1)


def _problems(exc: PydanticValidationError, prefix: str) -> list[Problem]:
    out = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = [str(part) for part in err["loc"]]
        etype = err["type"]
        if prefix == "inputs" and loc[:1] == ["workflow"] and len(loc) >= 2:  # inside one graph node
            out.append(Problem(f"inputs.workflow.{loc[1][:100]}", "node",
                               "each node must be an object with a string class_type"))
            continue
        loc = [part for part in loc if part != "[key]"]  # a bad object key is reported at the key itself
        if loc[:1] == ["webhook_events_filter"]:
            loc = loc[:1]  # the list as a whole, as clients know it
        path = ".".join(p for p in [prefix, *loc] if p)
        rule = _RULES.get(etype) or ("type" if etype in _TYPE_MESSAGES or etype.endswith("_type") else etype)
        message = _TYPE_MESSAGES.get(etype) or err["msg"]
        if rule == "unknown-field":
            message = "is not a known field here; see the OpenAPI document (GET /v1/openapi.json)"
        if rule == "required" and etype == "missing":
            message = "is required"
        out.append(Problem(path[:200] or "(body)", rule, message[:300]))
    return out


def _known_model(model: str | None, known_models: Collection[str] | None) -> list[Problem]:
    if model is None or known_models is None or model in known_models:
        return []
    return [Problem("model", "unknown-model", "is not a model this fleet serves (see GET /v1/models)")]


def _served_task(task: str | None, served_tasks: Collection[str] | None) -> list[Problem]:
    if task is None or served_tasks is None or task in served_tasks:
        return []
    served = ", ".join(t for t in TASKS if t in served_tasks) or "none"
    return [Problem("task", "unserved-task", f"{task} is not a task this fleet serves; it serves: {served}")]


def validate_job(body: Any, allow_loopback: bool = False, known_models: Collection[str] | None = None,
                 served_tasks: Collection[str] | None = None,
                 model_catalog: Mapping[str, Mapping[str, Any]] | None = None,
                 lora_tasks: Collection[str] | None = None) -> dict[str, Any]:
    """Check a decoded request body; return the normalized spec or raise ``ValidationError``.

    The rules are the pydantic models of ``runtime.jobs.models`` (the OpenAPI document is generated from
    them). ``known_models`` (optional) restricts ``model`` to the models the fleet serves, ``served_tasks``
    (optional) ``task`` to the tasks its backend serves (``runtime.backends.base.CATALOG``). ``model_catalog``
    (optional, id -> ``GET /v1/models`` entry) checks the job's LoRAs and that ``model`` is not one
    (runtime.jobs.loras); ``lora_tasks`` (optional) the tasks whose jobs may name LoRAs on the fleet.
    ``allow_loopback`` admits loopback webhook and image URLs (local mode only).
    """
    if not isinstance(body, dict):
        raise ValidationError([Problem("(body)", "type", "must be a JSON object")])
    shape = json_shape_problems(body)
    if shape:  # checked first: every later step recurses through the body
        raise ValidationError(shape)
    encoding: list[Problem] = []
    _encoding_problems(body, "", encoding)
    if encoding:  # checked first: every later rule (and the fingerprint) needs encodable text
        raise ValidationError(encoding)
    context = {"allow_loopback": allow_loopback}
    problems: list[Problem] = []
    envelope: JobEnvelope | None = None
    try:
        envelope = JobEnvelope.model_validate(_without_nulls(body, keep=NULL_IS_A_VALUE["envelope"]), context=context)
    except PydanticValidationError as exc:
        problems += _problems(exc, "")
    task = envelope.task if envelope else body.get("task", "txt2img")
    inputs = body.get("inputs")
    normalized: dict[str, Any] = {}
    # Without a valid envelope ``task`` is the raw value (an object, a list...): only a known name selects inputs.
    if isinstance(inputs, dict) and isinstance(task, str) and task in TASK_INPUTS:
        try:
            normalized = TASK_INPUTS[task].model_validate(_without_nulls(inputs, keep=NULL_IS_A_VALUE["inputs"]),
                                                          context=context).normalized()
        except PydanticValidationError as exc:
            problems += _problems(exc, "inputs")
    problems += _known_model(envelope.model if envelope else None, known_models)
    problems += _served_task(envelope.task if envelope else None, served_tasks)
    problems += lora_problems(envelope.model if envelope else None, normalized.get("loras", []), model_catalog)
    problems += unserved_loras(task if isinstance(task, str) else None, normalized.get("loras", []), lora_tasks)
    if problems or envelope is None:
        raise ValidationError(problems)
    events = [e for e in WEBHOOK_EVENTS if e in envelope.webhook_events_filter]
    spec = {"model": envelope.model, "task": task, "inputs": normalized, "webhook": envelope.webhook,
            "webhook_events_filter": events}
    spec.update(_asked_job_options(envelope))
    if len(canonical_json(spec)) > MAX_BODY_BYTES:
        raise ValidationError([Problem("(body)", "max-size", f"the job must be at most {MAX_BODY_BYTES} bytes")])
    return spec


def _asked_job_options(envelope: JobEnvelope) -> dict[str, Any]:
    """The job-level options a request gave, and only those: a job that asks for none has the spec (and the
    Idempotency-Key fingerprint) it had before they existed."""
    options: dict[str, Any] = {}
    # issue 44: deadline and priority (lane D), labels, retention and store_inputs (lane F)
    if envelope.deadline_seconds is not None:
        options["deadline_seconds"] = envelope.deadline_seconds
    if envelope.metadata:
        options["metadata"] = dict(envelope.metadata)
    if envelope.retention_seconds is not None:  # runtime/jobs/retention.py
        options["retention_seconds"] = envelope.retention_seconds
    if not envelope.store_inputs:
        options["store_inputs"] = False
    if envelope.priority is not None:
        options["priority"] = envelope.priority
    if envelope.preview:  # issue 38 (lane P)
        options["preview"] = True
    return options


def json_shape_problems(body: Any) -> list[Problem]:
    """Values strict JSON cannot carry back out, found without recursion: nesting deeper than
    ``MAX_JSON_DEPTH`` and non-finite numbers (``1e400`` parses to infinity, which ``json.dumps`` writes as
    ``Infinity``, not JSON). Each problem names the field (dotted path, list items as ``[i]``)."""
    problems: list[Problem] = []
    stack: list[tuple[Any, str, int]] = [(body, "", 1)]
    while stack and len(problems) < 10:
        value, path, depth = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            problems.append(Problem(path or "(body)", "finite-number",
                                    "must be a finite number (JSON has no Infinity or NaN; 1e400 overflows)"))
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                problems.append(Problem(path[:200] or "(body)", "max-depth",
                                        f"nests deeper than {MAX_JSON_DEPTH} levels of objects and lists"))
                continue
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                name = str(key).encode("utf-8", "backslashreplace").decode()  # lone surrogates stay printable
                child = f"{path}[{key}]" if isinstance(value, list) else (f"{path}.{name}" if path else name)
                stack.append((item, child[:300], depth + 1))
    return problems


def _without_nulls(data: Mapping[str, Any], keep: tuple[str, ...]) -> dict[str, Any]:
    """``null`` means "the default" for optional fields (``keep`` lists the ones where null is a value)."""
    return {k: v for k, v in data.items() if v is not None or k in keep}


def parse_json_body(raw: bytes | str | None) -> Any:
    """Decode a request body; raise ``ValidationError(malformed=True)`` (HTTP 400) when it is not JSON."""
    if raw is None or raw in (b"", ""):
        raise ValidationError([Problem("(body)", "required", "a JSON request body is required")], malformed=True)
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError([Problem("(body)", "max-size", f"must be at most {MAX_BODY_BYTES} bytes")],
                              malformed=True)
    deep = _too_deep(raw if isinstance(raw, str) else raw.decode("utf-8", "replace"), MAX_JSON_DEPTH)
    if deep is not None:  # before the decoder, whose own limit moves with the interpreter's stack
        raise ValidationError([Problem(deep, "max-depth",
                                       f"nests deeper than {MAX_JSON_DEPTH} levels of objects and lists")])
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ValidationError([Problem("(body)", "json", f"is not valid JSON ({str(exc)[:120]})")],
                              malformed=True) from exc


_JSON_TOKENS = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"|[\[\]{}:,]')  # a string (escapes included), or structure


def _too_deep(text: str, limit: int) -> str | None:
    """The field (dotted path) of the first object or list nested deeper than ``limit`` in JSON ``text``, the
    body object being level 1; None when nothing is. Iterative (strings and structure only), so the answer
    does not depend on the stack, and nearly free when the text has too few brackets to be that deep."""
    if text.count("[") + text.count("{") <= limit:
        return None
    stack: list[list[Any]] = []  # per open container: [is_list, current key or index]
    last_string = ""
    for m in _JSON_TOKENS.finditer(text):
        part = m.group()
        if part[0] == '"':
            last_string = part
        elif part in "[{":
            if len(stack) >= limit:
                return _path(stack)
            stack.append([part == "[", 0 if part == "[" else ""])
        elif part in "]}":
            if stack:
                stack.pop()
        elif stack and part == ":" and not stack[-1][0]:
            try:
                stack[-1][1] = str(json.loads(last_string))
            except ValueError:
                stack[-1][1] = last_string.strip('"')
        elif stack and part == "," and stack[-1][0]:
            stack[-1][1] += 1
    return None


def _path(stack: list[list[Any]]) -> str:
    """The dotted path (list items as ``[i]``) of the container being opened inside ``stack``'s innermost one."""
    path = ""
    for is_list, key in stack:
        if is_list:
            path = f"{path}[{key}]"
        else:
            name = str(key).encode("utf-8", "backslashreplace").decode()  # lone surrogates stay printable
            path = f"{path}.{name}" if path else name
    return path[:200] or "(body)"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def fingerprint(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a normalized spec: the Idempotency-Key request fingerprint."""
    return hashlib.sha256(canonical_json(spec)).hexdigest()


@dataclass(frozen=True)
class JobSpec:
    """A validated job, typed: what the worker and the backends read (``ctx.job.inputs.steps``).

    ``inputs`` is the task's model from ``runtime.jobs.models.TASK_INPUTS``, so its limits and defaults are the
    API's (one definition): a new input is a field there, and every backend sees it.
    """

    model: str
    task: str
    inputs: JobInputs
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = field(default=DEFAULT_WEBHOOK_EVENTS)
    deadline_seconds: int | None = None  # issue 44 (lane D)
    priority: str | None = None  # issue 44 (lane D): None is normal
    preview: bool = False  # issue 38 (lane P): previews while it runs

    @classmethod
    def parse(cls, data: Any, allow_loopback: bool = False) -> JobSpec:
        """Check ``data`` with the API's rules (``validate_job``) and return it typed; raise ``ValidationError``."""
        spec = validate_job(data, allow_loopback=allow_loopback)
        inputs = TASK_INPUTS[spec["task"]].model_validate(spec["inputs"], context={"allow_loopback": allow_loopback})
        return cls(model=spec["model"], task=spec["task"], inputs=inputs,
                   webhook=spec["webhook"], webhook_events_filter=tuple(spec["webhook_events_filter"]),
                   deadline_seconds=spec.get("deadline_seconds"), priority=spec.get("priority"),
                   preview=bool(spec.get("preview", False)))

    def to_dict(self) -> dict[str, Any]:
        """The normalized spec (``validate_job``'s result, as the queue message carries it)."""
        out = {"model": self.model, "task": self.task, "inputs": self.inputs.normalized(), "webhook": self.webhook,
               "webhook_events_filter": list(self.webhook_events_filter)}
        if self.deadline_seconds is not None:  # issue 44 (lane D)
            out["deadline_seconds"] = self.deadline_seconds
        if self.priority is not None:
            out["priority"] = self.priority
        if self.preview:  # issue 38 (lane P)
            out["preview"] = True
        return out

    def with_seed(self, rng: random.Random | None = None) -> JobSpec:
        """This spec with its seed resolved: a null seed of an image or video job becomes a random one (the
        API's "null: random"); a workflow's null seed stays null (its graph keeps its own seeds)."""
        inputs = self.inputs.with_seed(rng)
        return self if inputs is self.inputs else replace(self, inputs=inputs)

    def wants(self, event: str) -> bool:
        """Whether this job's webhook subscribes to ``event`` (start, output, completed, progress)."""
        return bool(self.webhook) and event in self.webhook_events_filter
