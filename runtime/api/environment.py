"""The job API's environment (``GENAI_*``), defined once: the stack writes it, the Lambdas read it.

``ApiConfig`` (handler) and ``AuthorizerConfig`` (authorizer) each have ``to_env`` -- what
components/api.py puts on the function -- and ``from_env`` -- what the function reads on its first
request (never at import). ``from_env(to_env(c)) == c`` is tested, like the agent config. In ``to_env``
string fields may hold Pulumi outputs; they are passed through untouched.

==============================  ===========================================================
GENAI_JOB_TABLE                 DynamoDB job table (required)
GENAI_QUEUE_KIND                sqs (default) | kafka
GENAI_QUEUE_URL                 SQS queue URL (sqs)
GENAI_MODEL_GROUPS              JSON [[group, [model ids]], ...]: a queue per group (model affinity)
GENAI_KAFKA_BOOTSTRAP           bootstrap servers (kafka); GENAI_KAFKA_TOPIC (genai-jobs)
GENAI_KAFKA_IAM                 true (MSK IAM auth, default) | false (local mock cluster)
GENAI_KAFKA_CREATE_TOPIC        true (default): create the topic on first send if missing
GENAI_AUTH_MODE                 api-key (default) | iam | none (local mode only)
GENAI_API_KEYS_PREFIX           SSM path of key records, e.g. /genai-fleet/dev/api-keys
GENAI_API_KEYS_FILE             local mode: JSON file of key records; GENAI_API_KEYS: key,key
GENAI_API_KEYS_ACCEPT_UNTAGGED  true: also accept first-format keys (no tag; each costs a lookup)
GENAI_KEY_QUOTA_PER_DAY         jobs per key per day (unset: no quota)
GENAI_KEY_RATE_LIMIT            requests/s per key per instance; GENAI_KEY_BURST
GENAI_HOT_MODELS                JSON list of model ids; GENAI_MODEL_BUCKET: model store bucket
GENAI_ENFORCE_KNOWN_MODELS      true: refuse models not listed by GET /v1/models
GENAI_TASKS                     JSON list of the tasks the fleet's backend serves (the stack writes it from the
                                backend catalog); others are refused with 422. Unset: every task
GENAI_LORA_TASKS                JSON list of the tasks whose jobs may name LoRAs on this fleet (the stack writes
                                it from the backend catalog; [] on Neuron); LoRAs on others are a 422. Unset: all
GENAI_NODE_CATALOG              s3://bucket/key of the node catalog of the ComfyUI image the fleet runs (the stack
                                writes it from the AMI it deploys, docs/amis.md); comfyui-workflow jobs are checked
                                against it at submit. Unset or not published: accepted with a Warning header
GENAI_VIDEO_FORMATS             JSON list of the video output_format values the fleet's backend writes; others are
                                refused with 422. Unset: every format (runtime.jobs.models.VIDEO_FORMATS)
GENAI_VIDEO_MODEL_KINDS         JSON list of the model store kinds the backend makes a video from: a video task on
                                a manifest model of another kind is refused with 422. Unset: any model
GENAI_ALLOW_LOOPBACK_URLS       true only in local mode
GENAI_AVERAGE_JOB_SECONDS       for wait estimates (default 3)
GENAI_TENANT_BUDGET_USD_PER_DAY daily budget per tenant (a key until tenants exist), USD (unset: none)
GENAI_FLEET_HOURLY_USD          the fleet's instance price (the stack's table): a job's expected cost
GENAI_MAX_WAIT_SECONDS          cap of Prefer: wait (default 25)
GENAI_AWS_ENDPOINT_URL          one endpoint for every AWS client (moto / local mode)
GENAI_EVENT_TABLE               the job event log table (GET /v1/jobs/{id}/events, progress in job views)
AWS_REGION                      set by Lambda itself; never written by ``to_env``
==============================  ===========================================================
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from runtime.jobs.models import TASKS, VIDEO_FORMATS
from runtime.jobs.output_links import DEFAULT_TTL_SECONDS
from runtime.queue_names import KAFKA_TOPIC

MAX_WAIT_CAP_SECONDS = 25.0  # the gateway stops waiting at 30 s


def _bool(value: str | None, default: bool = False) -> bool:
    return default if value is None or value == "" else value.strip().lower() in ("1", "true", "yes", "on")


def _num(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _max_wait(value: str | None) -> float:
    """GENAI_MAX_WAIT_SECONDS: unset -> 25; 0 turns sync waits off; never above 25 (the gateway's 30 s)."""
    seconds = _num(value)
    if seconds is None:
        return MAX_WAIT_CAP_SECONDS
    if not 0 <= seconds < float("inf"):
        raise RuntimeError(f"GENAI_MAX_WAIT_SECONDS must be a number of seconds from 0 to 25 (got {value!r})")
    return min(MAX_WAIT_CAP_SECONDS, seconds)


def _tasks(value: str | None) -> tuple[str, ...]:
    """GENAI_TASKS: a JSON list of task names from ``runtime.jobs.models.TASKS``; unset or empty: every task."""
    if not value:
        return ()
    try:
        tasks = json.loads(value)
    except ValueError:
        tasks = None
    if not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) and t in TASKS for t in tasks):
        raise RuntimeError(f"GENAI_TASKS must be a non-empty JSON list of tasks from {', '.join(TASKS)} "
                           f"(got {value[:200]!r})")
    return tuple(tasks)


def _lora_tasks(value: str | None) -> tuple[str, ...] | None:
    """GENAI_LORA_TASKS: a JSON list (possibly empty) of task names; unset: None (every task takes LoRAs)."""
    if value is None or value == "":
        return None
    try:
        tasks = json.loads(value)
    except ValueError:
        tasks = None
    if not isinstance(tasks, list) or not all(isinstance(t, str) and t in TASKS for t in tasks):
        raise RuntimeError(f"GENAI_LORA_TASKS must be a JSON list of tasks from {', '.join(TASKS)} "
                           f"(got {value[:200]!r})")
    return tuple(tasks)
def _names(variable: str, value: str | None, allowed: tuple[str, ...] | None) -> tuple[str, ...]:
    """A JSON list of names (from ``allowed`` when given); unset or empty: ()."""
    if not value:
        return ()
    try:
        names = json.loads(value)
    except ValueError:
        names = None
    if not isinstance(names, list) or not names or not all(
            isinstance(n, str) and n and (allowed is None or n in allowed) for n in names):
        what = f"from {', '.join(allowed)}" if allowed else "(non-empty strings)"
        raise RuntimeError(f"{variable} must be a non-empty JSON list of names {what} (got {value[:200]!r})")
    return tuple(names)


def _text(value: Any) -> Any:
    """An environment value: booleans as true/false, lists as JSON, strings and Pulumi outputs unchanged."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return value


# field -> variable; every field of ApiConfig but ``region`` (AWS_REGION belongs to the Lambda service).
API_VARIABLES = {
    "job_table": "GENAI_JOB_TABLE", "queue_kind": "GENAI_QUEUE_KIND", "queue_url": "GENAI_QUEUE_URL",
    "kafka_bootstrap": "GENAI_KAFKA_BOOTSTRAP", "kafka_topic": "GENAI_KAFKA_TOPIC", "kafka_iam": "GENAI_KAFKA_IAM",
    "kafka_create_topic": "GENAI_KAFKA_CREATE_TOPIC", "auth_mode": "GENAI_AUTH_MODE",
    "api_keys_prefix": "GENAI_API_KEYS_PREFIX", "api_keys_file": "GENAI_API_KEYS_FILE", "api_keys": "GENAI_API_KEYS",
    "accept_untagged_keys": "GENAI_API_KEYS_ACCEPT_UNTAGGED", "quota_per_day": "GENAI_KEY_QUOTA_PER_DAY",
    "rate_per_second": "GENAI_KEY_RATE_LIMIT", "burst": "GENAI_KEY_BURST", "hot_models": "GENAI_HOT_MODELS",
    "model_bucket": "GENAI_MODEL_BUCKET", "enforce_known_models": "GENAI_ENFORCE_KNOWN_MODELS",
    "allow_loopback": "GENAI_ALLOW_LOOPBACK_URLS", "average_job_seconds": "GENAI_AVERAGE_JOB_SECONDS",
    "max_wait_seconds": "GENAI_MAX_WAIT_SECONDS", "endpoint_url": "GENAI_AWS_ENDPOINT_URL",
    "model_groups": "GENAI_MODEL_GROUPS", "tasks": "GENAI_TASKS",
    "lora_tasks": "GENAI_LORA_TASKS",
    "node_catalog": "GENAI_NODE_CATALOG",
    "video_formats": "GENAI_VIDEO_FORMATS", "video_model_kinds": "GENAI_VIDEO_MODEL_KINDS",
    "event_table": "GENAI_EVENT_TABLE",
    "budget_usd_per_day": "GENAI_TENANT_BUDGET_USD_PER_DAY", "hourly_usd": "GENAI_FLEET_HOURLY_USD",
    # issue 43: output links (runtime/jobs/output_links.py)
    "outputs_base_url": "GENAI_OUTPUTS_BASE_URL", "output_url_ttl_seconds": "GENAI_OUTPUT_URL_TTL_SECONDS",
    "output_signing_key_id": "GENAI_OUTPUT_SIGNING_KEY_ID",
    "output_signing_key_parameter": "GENAI_OUTPUT_SIGNING_KEY_PARAMETER",
}
# Written even when they hold the default, so the function's configuration reads on its own.
_API_ALWAYS = ("job_table", "queue_kind", "auth_mode", "hot_models", "average_job_seconds", "max_wait_seconds")
_API_KAFKA = ("kafka_iam", "kafka_create_topic")  # written whenever the queue is Kafka


@dataclass(frozen=True)
class ApiConfig:
    job_table: str
    queue_kind: str = "sqs"
    queue_url: str | None = None
    kafka_bootstrap: str | None = None
    kafka_topic: str = KAFKA_TOPIC
    kafka_iam: bool = True
    kafka_create_topic: bool = True
    auth_mode: str = "api-key"
    api_keys_prefix: str | None = None
    api_keys_file: str | None = None
    api_keys: tuple[str, ...] = ()
    accept_untagged_keys: bool = False
    quota_per_day: int | None = None
    rate_per_second: float | None = None
    burst: float | None = None
    hot_models: tuple[str, ...] = ()
    model_bucket: str | None = None
    enforce_known_models: bool = False
    allow_loopback: bool = False
    average_job_seconds: float = 3.0
    max_wait_seconds: float = MAX_WAIT_CAP_SECONDS
    region: str | None = None
    endpoint_url: str | None = None
    model_groups: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (group, model ids): runtime.queues.routing
    tasks: tuple[str, ...] = ()  # the tasks the fleet serves; (): every task (runtime.jobs.models.TASKS)
    lora_tasks: tuple[str, ...] | None = None  # tasks whose jobs may name LoRAs; None: every task (issue 40)
    node_catalog: str | None = None  # s3://bucket/key of the fleet image's ComfyUI node catalog (issue 41)
    video_formats: tuple[str, ...] = ()  # the video output formats the fleet writes; (): every one
    video_model_kinds: tuple[str, ...] = ()  # model store kinds a video is made from; (): any model
    event_table: str | None = None  # the job event log (issue 38; runtime/jobs/events.py); None: no events route
    budget_usd_per_day: float | None = None  # per tenant (runtime.jobs.spend); None: no budget
    hourly_usd: float | None = None  # the fleet's instance price: a job's expected cost (budget, quotes)
    # issue 43: output links are made when handed out (runtime/jobs/output_links.py)
    outputs_base_url: str = ""  # the CDN serving the outputs bucket, e.g. https://d111.cloudfront.net
    output_url_ttl_seconds: int = DEFAULT_TTL_SECONDS  # outputUrlTtlSeconds: a signed link's lifetime
    output_signing_key_id: str | None = None  # the CloudFront public key id; None: public links
    output_signing_key_parameter: str | None = None  # the SecureString holding its private half

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ApiConfig:
        e = os.environ if env is None else env
        if not e.get("GENAI_JOB_TABLE"):
            raise RuntimeError("GENAI_JOB_TABLE is not set: the API needs its job table")
        quota = _num(e.get("GENAI_KEY_QUOTA_PER_DAY"))
        return cls(
            job_table=e["GENAI_JOB_TABLE"], queue_kind=e.get("GENAI_QUEUE_KIND", "sqs"),
            queue_url=e.get("GENAI_QUEUE_URL") or None, kafka_bootstrap=e.get("GENAI_KAFKA_BOOTSTRAP") or None,
            kafka_topic=e.get("GENAI_KAFKA_TOPIC") or KAFKA_TOPIC, kafka_iam=_bool(e.get("GENAI_KAFKA_IAM"), True),
            kafka_create_topic=_bool(e.get("GENAI_KAFKA_CREATE_TOPIC"), True),
            auth_mode=e.get("GENAI_AUTH_MODE", "api-key"), api_keys_prefix=e.get("GENAI_API_KEYS_PREFIX") or None,
            api_keys_file=e.get("GENAI_API_KEYS_FILE") or None,
            api_keys=tuple(k for k in (e.get("GENAI_API_KEYS") or "").split(",") if k.strip()),
            accept_untagged_keys=_bool(e.get("GENAI_API_KEYS_ACCEPT_UNTAGGED")),
            quota_per_day=int(quota) if quota else None, rate_per_second=_num(e.get("GENAI_KEY_RATE_LIMIT")),
            burst=_num(e.get("GENAI_KEY_BURST")), hot_models=tuple(json.loads(e.get("GENAI_HOT_MODELS") or "[]")),
            model_bucket=e.get("GENAI_MODEL_BUCKET") or None,
            enforce_known_models=_bool(e.get("GENAI_ENFORCE_KNOWN_MODELS")),
            allow_loopback=_bool(e.get("GENAI_ALLOW_LOOPBACK_URLS")),
            average_job_seconds=_num(e.get("GENAI_AVERAGE_JOB_SECONDS")) or 3.0,
            max_wait_seconds=_max_wait(e.get("GENAI_MAX_WAIT_SECONDS")),
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION"),
            endpoint_url=e.get("GENAI_AWS_ENDPOINT_URL") or None,
            model_groups=tuple((g, tuple(ms)) for g, ms in json.loads(e.get("GENAI_MODEL_GROUPS") or "[]")),
            tasks=_tasks(e.get("GENAI_TASKS")), lora_tasks=_lora_tasks(e.get("GENAI_LORA_TASKS")),
            node_catalog=_node_catalog(e.get("GENAI_NODE_CATALOG")),
            video_formats=_names("GENAI_VIDEO_FORMATS", e.get("GENAI_VIDEO_FORMATS"), VIDEO_FORMATS),
            video_model_kinds=_names("GENAI_VIDEO_MODEL_KINDS", e.get("GENAI_VIDEO_MODEL_KINDS"), None),
            event_table=e.get("GENAI_EVENT_TABLE") or None,
            budget_usd_per_day=_num(e.get("GENAI_TENANT_BUDGET_USD_PER_DAY")),
            hourly_usd=_num(e.get("GENAI_FLEET_HOURLY_USD")),
            outputs_base_url=e.get("GENAI_OUTPUTS_BASE_URL") or "",
            output_url_ttl_seconds=int(e.get("GENAI_OUTPUT_URL_TTL_SECONDS") or DEFAULT_TTL_SECONDS),
            output_signing_key_id=e.get("GENAI_OUTPUT_SIGNING_KEY_ID") or None,
            output_signing_key_parameter=e.get("GENAI_OUTPUT_SIGNING_KEY_PARAMETER") or None)

    def to_env(self) -> dict[str, Any]:
        """The variables ``from_env`` reads back into this config (region aside): set or non-default fields."""
        env: dict[str, Any] = {}
        for f in fields(self):
            if f.name not in API_VARIABLES:
                continue
            value = getattr(self, f.name)
            wanted = (f.name in _API_ALWAYS or (f.name in _API_KAFKA and self.queue_kind == "kafka")
                      or (value is not None and value is not f.default and value != f.default))
            if value is None or not wanted:
                continue
            env[API_VARIABLES[f.name]] = ",".join(value) if f.name == "api_keys" else _text(value)
        return env


def _node_catalog(value: str | None) -> str | None:
    """GENAI_NODE_CATALOG: s3://bucket/key, checked here so a bad value fails the first request naming it."""
    if not value:
        return None
    from runtime.api.workflow_check import parse_s3_uri

    parse_s3_uri(value)
    return value


@dataclass(frozen=True)
class AuthorizerConfig:
    """What the api-key authorizer reads: where the key records are, and whether untagged keys count."""

    api_keys_prefix: str
    accept_untagged_keys: bool = False
    endpoint_url: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthorizerConfig:
        e = os.environ if env is None else env
        if not e.get("GENAI_API_KEYS_PREFIX"):
            raise RuntimeError("GENAI_API_KEYS_PREFIX is not set: the authorizer needs the SSM path of the keys")
        return cls(api_keys_prefix=e["GENAI_API_KEYS_PREFIX"],
                   accept_untagged_keys=_bool(e.get("GENAI_API_KEYS_ACCEPT_UNTAGGED")),
                   endpoint_url=e.get("GENAI_AWS_ENDPOINT_URL") or None)

    def to_env(self) -> dict[str, Any]:
        env: dict[str, Any] = {"GENAI_API_KEYS_PREFIX": self.api_keys_prefix}
        if self.accept_untagged_keys:
            env["GENAI_API_KEYS_ACCEPT_UNTAGGED"] = "true"
        if self.endpoint_url:
            env["GENAI_AWS_ENDPOINT_URL"] = self.endpoint_url
        return env
