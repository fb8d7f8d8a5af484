"""The job spec shared by the API (which validates requests with it) and the worker (which reads it).

A request body (``POST /v1/jobs``) is a JSON object::

    {
      "model": "sdxl-base-1.0",               # required; lowercase 'name' or 'family/name'
      "task": "txt2img",                      # txt2img (default) | img2img | txt2video | comfyui-workflow
      "inputs": {...},                        # required; fields per task, below
      "webhook": "https://example.com/hook",  # optional; public http(s) URL (see runtime.net_safety)
      "webhook_events_filter": ["completed"]  # optional; subset of start, output, completed
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
gets the normalized spec in the queue message (docs/CONTRACTS.md) and may re-check it with
``JobSpec.from_dict``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.jobs.errors import Problem, ValidationError
from runtime.net_safety import UnsafeURLError, check_url_syntax

TASKS = ("txt2img", "img2img", "txt2video", "comfyui-workflow")
WEBHOOK_EVENTS = ("start", "output", "completed")
DEFAULT_WEBHOOK_EVENTS = ("completed",)
MODEL_ID = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}(/[a-z0-9][a-z0-9._-]{0,62})?$")
SCHEDULER = re.compile(r"^[A-Za-z0-9_+. -]{1,64}$")
MAX_PROMPT = 4000
MIN_SIDE, MAX_SIDE, MAX_PIXELS = 64, 2048, 2048 * 2048
MAX_STEPS, MAX_GUIDANCE, MAX_SEED, MAX_OUTPUTS = 150, 30.0, 2**32 - 1, 4
MAX_FRAMES, MAX_FPS = 240, 60
MAX_INLINE_IMAGE_CHARS = 150_000
MAX_WORKFLOW_BYTES = 200_000
MAX_BODY_BYTES = 256_000
MAX_WORKFLOW_IMAGES = 8
_DATA_URI = re.compile(r"^data:image/(png|jpeg|webp);base64,([A-Za-z0-9+/=\r\n]*)$")
_TOP_LEVEL = ("model", "task", "inputs", "webhook", "webhook_events_filter")

_COMMON = ("prompt", "negative_prompt", "width", "height", "steps", "guidance", "seed", "num_outputs", "scheduler")
_TASK_FIELDS: dict[str, tuple[str, ...]] = {
    "txt2img": _COMMON,
    "img2img": (*_COMMON, "image", "mask", "strength"),
    "txt2video": (*_COMMON, "frames", "fps"),
    "comfyui-workflow": ("workflow", "images", "seed"),
}


class _Collector:
    """Collects problems so one response lists every broken rule, not just the first."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, field_name: str, rule: str, message: str) -> None:
        self.problems.append(Problem(field_name, rule, message))


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and not (isinstance(value, float) and not math.isfinite(value))


def _int_field(c: _Collector, inputs: Mapping[str, Any], name: str, lo: int, hi: int, default: int | None,
               nullable: bool = False) -> int | None:
    path = f"inputs.{name}"
    value = inputs.get(name, default)
    if value is None:
        return None if nullable or default is None else default
    if isinstance(value, float) and value.is_integer() and not isinstance(value, bool):
        value = int(value)
    if not _is_int(value):
        c.add(path, "type", "must be an integer")
        return None
    if not lo <= value <= hi:
        c.add(path, "range", f"must be from {lo} to {hi} (got {value})")
        return None
    return value


def _float_field(c: _Collector, inputs: Mapping[str, Any], name: str, lo: float, hi: float,
                 default: float) -> float | None:
    path = f"inputs.{name}"
    value = inputs.get(name, default)
    if value is None:
        return default
    if not _is_number(value):
        c.add(path, "type", "must be a number")
        return None
    if not lo <= value <= hi:
        c.add(path, "range", f"must be from {lo:g} to {hi:g} (got {value:g})")
        return None
    return float(value)


def _text_field(c: _Collector, inputs: Mapping[str, Any], name: str, required: bool) -> str | None:
    path = f"inputs.{name}"
    value = inputs.get(name)
    if value is None:
        if required:
            c.add(path, "required", "is required")
        return None
    if not isinstance(value, str):
        c.add(path, "type", "must be a string")
        return None
    if required and not value.strip():
        c.add(path, "required", "must not be empty")
        return None
    if len(value) > MAX_PROMPT:
        c.add(path, "max-length", f"must be at most {MAX_PROMPT} characters (got {len(value)})")
        return None
    if "\x00" in value:
        c.add(path, "characters", "must not contain NUL characters")
        return None
    return value


def _side(c: _Collector, inputs: Mapping[str, Any], name: str, default: int | None) -> int | None:
    value = _int_field(c, inputs, name, MIN_SIDE, MAX_SIDE, default, nullable=default is None)
    if value is not None and value % 8:
        c.add(f"inputs.{name}", "multiple-of-8", f"must be a multiple of 8 (got {value})")
        return None
    return value


def check_image_ref(value: Any, path: str, c: _Collector, allow_loopback: bool = False) -> str | None:
    """An input image: a public http(s) URL or a small base64 data URI."""
    if not isinstance(value, str) or not value:
        c.add(path, "type", "must be an http(s) URL or a data:image/...;base64 URI")
        return None
    if value.startswith("data:"):
        if len(value) > MAX_INLINE_IMAGE_CHARS:
            c.add(path, "max-length", f"inline images must be at most {MAX_INLINE_IMAGE_CHARS} characters; "
                                      f"pass larger images by URL")
            return None
        m = _DATA_URI.match(value)
        if not m:
            c.add(path, "data-uri", "must be data:image/png|jpeg|webp;base64,<data>")
            return None
        try:
            base64.b64decode(m.group(2), validate=False)
        except (binascii.Error, ValueError):
            c.add(path, "data-uri", "has invalid base64 data")
            return None
        return value
    return _url(c, value, path, allow_loopback)


def _url(c: _Collector, value: Any, path: str, allow_loopback: bool) -> str | None:
    if not isinstance(value, str):
        c.add(path, "type", "must be a URL string")
        return None
    try:
        check_url_syntax(value, allow_loopback=allow_loopback)
    except UnsafeURLError as exc:
        c.add(path, f"url-{exc.rule}", str(exc))
        return None
    return value


def _common_inputs(c: _Collector, inputs: Mapping[str, Any], task: str) -> dict[str, Any]:
    side_default = {"txt2img": 1024, "img2img": None, "txt2video": 512}[task]
    out: dict[str, Any] = {
        "prompt": _text_field(c, inputs, "prompt", required=True),
        "negative_prompt": _text_field(c, inputs, "negative_prompt", required=False) or "",
        "width": _side(c, inputs, "width", side_default),
        "height": _side(c, inputs, "height", side_default),
        "steps": _int_field(c, inputs, "steps", 1, MAX_STEPS, 30),
        "guidance": _float_field(c, inputs, "guidance", 0.0, MAX_GUIDANCE, 7.0),
        "seed": _int_field(c, inputs, "seed", 0, MAX_SEED, None, nullable=True),
        "num_outputs": _int_field(c, inputs, "num_outputs", 1, 1 if task == "txt2video" else MAX_OUTPUTS, 1),
    }
    if out["width"] and out["height"] and out["width"] * out["height"] > MAX_PIXELS:
        c.add("inputs.width", "max-pixels", f"width x height must be at most {MAX_PIXELS} pixels")
    scheduler = inputs.get("scheduler")
    if scheduler is not None:
        if not isinstance(scheduler, str) or not SCHEDULER.match(scheduler):
            c.add("inputs.scheduler", "pattern", "must be 1-64 letters, digits, spaces or _+.-")
        else:
            out["scheduler"] = scheduler
    return out


def _task_inputs(c: _Collector, inputs: Mapping[str, Any], task: str, allow_loopback: bool) -> dict[str, Any]:
    if task == "comfyui-workflow":
        return _workflow_inputs(c, inputs, allow_loopback)
    out = _common_inputs(c, inputs, task)
    if task == "img2img":
        if inputs.get("image") is None:
            c.add("inputs.image", "required", "is required for img2img")
        else:
            out["image"] = check_image_ref(inputs["image"], "inputs.image", c, allow_loopback)
        if inputs.get("mask") is not None:
            out["mask"] = check_image_ref(inputs["mask"], "inputs.mask", c, allow_loopback)
        out["strength"] = _float_field(c, inputs, "strength", 0.0, 1.0, 0.75)
    elif task == "txt2video":
        out["frames"] = _int_field(c, inputs, "frames", 1, MAX_FRAMES, 16)
        out["fps"] = _int_field(c, inputs, "fps", 1, MAX_FPS, 8)
    return out


def _workflow_inputs(c: _Collector, inputs: Mapping[str, Any], allow_loopback: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    workflow = inputs.get("workflow")
    if workflow is None:
        c.add("inputs.workflow", "required", "is required for comfyui-workflow")
    elif not isinstance(workflow, dict) or not workflow:
        c.add("inputs.workflow", "type", "must be a non-empty object (ComfyUI API format: node id -> node)")
    else:
        size = len(json.dumps(workflow, separators=(",", ":")).encode())
        bad_nodes = [k for k, v in workflow.items()
                     if not isinstance(v, dict) or not isinstance(v.get("class_type"), str)]
        if size > MAX_WORKFLOW_BYTES:
            c.add("inputs.workflow", "max-size", f"must be at most {MAX_WORKFLOW_BYTES} bytes of JSON (got {size})")
        elif bad_nodes:
            c.add(f"inputs.workflow.{bad_nodes[0]}", "node", "each node must be an object with a string class_type")
        else:
            out["workflow"] = workflow
    images = inputs.get("images")
    if images is not None:
        if not isinstance(images, dict) or len(images) > MAX_WORKFLOW_IMAGES:
            c.add("inputs.images", "type", f"must be an object of at most {MAX_WORKFLOW_IMAGES} name -> image")
        else:
            out["images"] = {}
            for name, ref in images.items():
                if not re.match(r"^[A-Za-z0-9._-]{1,100}$", name):
                    c.add(f"inputs.images.{name[:40]}", "name", "image names are 1-100 of letters, digits, ._-")
                    continue
                out["images"][name] = check_image_ref(ref, f"inputs.images.{name}", c, allow_loopback)
    seed = _int_field(c, inputs, "seed", 0, MAX_SEED, None, nullable=True)
    if seed is not None:
        out["seed"] = seed
    return out


def _webhook(c: _Collector, body: Mapping[str, Any], allow_loopback: bool) -> tuple[str | None, list[str]]:
    url = body.get("webhook")
    if url is not None:
        url = _url(c, url, "webhook", allow_loopback)
    events = body.get("webhook_events_filter")
    if events is None:
        return url, list(DEFAULT_WEBHOOK_EVENTS)
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        c.add("webhook_events_filter", "type", "must be a list of event names")
        return url, []
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown:
        c.add("webhook_events_filter", "enum", f"events must be among {', '.join(WEBHOOK_EVENTS)} "
                                                f"(got {', '.join(repr(e) for e in unknown[:3])})")
    return url, [e for e in WEBHOOK_EVENTS if e in events]


def _model(c: _Collector, body: Mapping[str, Any], known_models: Collection[str] | None) -> str | None:
    model = body.get("model")
    if model is None:
        c.add("model", "required", "is required")
    elif not isinstance(model, str) or not MODEL_ID.match(model):
        c.add("model", "pattern", "must be a lowercase model id: 'name' or 'family/name' of letters, digits, ._-")
    elif known_models is not None and model not in known_models:
        c.add("model", "unknown-model", "is not a model this fleet serves (see GET /v1/models)")
    else:
        return model
    return None


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


def validate_job(body: Any, allow_loopback: bool = False, known_models: Collection[str] | None = None
                 ) -> dict[str, Any]:
    """Check a decoded request body; return the normalized spec or raise ``ValidationError``.

    ``known_models`` (optional) restricts ``model`` to the models the fleet serves.
    ``allow_loopback`` admits loopback webhook and image URLs (local mode only).
    """
    c = _Collector()
    if not isinstance(body, dict):
        raise ValidationError([Problem("(body)", "type", "must be a JSON object")])
    encoding: list[Problem] = []
    _encoding_problems(body, "", encoding)
    if encoding:  # checked first: every later rule (and the fingerprint) needs encodable text
        raise ValidationError(encoding)
    for key in body:
        if key not in _TOP_LEVEL:
            c.add(str(key)[:100], "unknown-field", f"is not a field of a job; known fields: {', '.join(_TOP_LEVEL)}")
    model = _model(c, body, known_models)
    task = body.get("task", "txt2img")
    if task not in TASKS:
        c.add("task", "enum", f"must be one of {', '.join(TASKS)}")
        task = None
    inputs = body.get("inputs")
    normalized: dict[str, Any] = {}
    if not isinstance(inputs, dict):
        c.add("inputs", "required" if inputs is None else "type", "must be an object")
    elif task is not None:
        for key in inputs:
            if key not in _TASK_FIELDS[task]:
                c.add(f"inputs.{str(key)[:100]}", "unknown-field",
                      f"is not an input of {task}; known inputs: {', '.join(_TASK_FIELDS[task])}")
        normalized = _task_inputs(c, inputs, task, allow_loopback)
    webhook, events = _webhook(c, body, allow_loopback)
    if c.problems:
        raise ValidationError(c.problems)
    spec = {"model": model, "task": task, "inputs": normalized, "webhook": webhook,
            "webhook_events_filter": events}
    if len(canonical_json(spec)) > MAX_BODY_BYTES:
        raise ValidationError([Problem("(body)", "max-size", f"the job must be at most {MAX_BODY_BYTES} bytes")])
    return spec


def parse_json_body(raw: bytes | str | None) -> Any:
    """Decode a request body; raise ``ValidationError(malformed=True)`` (HTTP 400) when it is not JSON."""
    if raw is None or raw in (b"", ""):
        raise ValidationError([Problem("(body)", "required", "a JSON request body is required")], malformed=True)
    if len(raw) > MAX_BODY_BYTES:
        raise ValidationError([Problem("(body)", "max-size", f"must be at most {MAX_BODY_BYTES} bytes")],
                              malformed=True)
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ValidationError([Problem("(body)", "json", f"is not valid JSON ({str(exc)[:120]})")],
                              malformed=True) from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed in JSON")


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def fingerprint(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of a normalized spec: the Idempotency-Key request fingerprint."""
    return hashlib.sha256(canonical_json(spec)).hexdigest()


@dataclass(frozen=True)
class JobSpec:
    """Typed read-only view of a normalized spec, for the worker."""

    model: str
    task: str
    inputs: Mapping[str, Any]
    webhook: str | None = None
    webhook_events_filter: tuple[str, ...] = field(default=DEFAULT_WEBHOOK_EVENTS)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], revalidate: bool = True, allow_loopback: bool = False) -> JobSpec:
        spec = validate_job(dict(data), allow_loopback=allow_loopback) if revalidate else dict(data)
        return cls(model=spec["model"], task=spec["task"], inputs=spec["inputs"], webhook=spec.get("webhook"),
                   webhook_events_filter=tuple(spec.get("webhook_events_filter") or DEFAULT_WEBHOOK_EVENTS))

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "task": self.task, "inputs": dict(self.inputs), "webhook": self.webhook,
                "webhook_events_filter": list(self.webhook_events_filter)}

    def wants(self, event: str) -> bool:
        """Whether this job's webhook subscribes to ``event`` (start, output, completed)."""
        return bool(self.webhook) and event in self.webhook_events_filter

