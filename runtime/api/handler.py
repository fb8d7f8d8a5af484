"""Lambda entry point (API Gateway HTTP API, payload format 2.0) and the event <-> app adapter.

``lambda_handler(event, context)`` -> ``handle_event(event, app)``; the local server calls the same
``handle_event`` with events it builds from plain HTTP, so local mode runs this exact code.

Configuration comes from environment variables (``ApiConfig.from_env``), read on the first request
(never at import), and the app is cached for the life of the Lambda instance:

==============================  ===========================================================
GENAI_JOB_TABLE                 DynamoDB job table (required)
GENAI_QUEUE_KIND                sqs (default) | kafka
GENAI_QUEUE_URL                 SQS queue URL (sqs)
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
GENAI_ALLOW_LOOPBACK_URLS       true only in local mode
GENAI_AVERAGE_JOB_SECONDS       for wait estimates (default 3)
GENAI_MAX_WAIT_SECONDS          cap of Prefer: wait (default 25)
GENAI_AWS_ENDPOINT_URL          one endpoint for every AWS client (moto / local mode)
==============================  ===========================================================
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runtime.api.app import ApiApp, ApiOptions, Request, Response
from runtime.api.auth import Principal, SsmKeyStore, StaticKeyStore
from runtime.queue_names import KAFKA_TOPIC

log = logging.getLogger(__name__)


def _bool(value: str | None, default: bool = False) -> bool:
    return default if value is None or value == "" else value.strip().lower() in ("1", "true", "yes", "on")


def _num(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None


def _max_wait(value: str | None) -> float:
    """GENAI_MAX_WAIT_SECONDS: unset -> 25; 0 turns sync waits off; never above 25 (the gateway's 30 s)."""
    seconds = _num(value)
    if seconds is None:
        return 25.0
    if not 0 <= seconds < float("inf"):
        raise RuntimeError(f"GENAI_MAX_WAIT_SECONDS must be a number of seconds from 0 to 25 (got {value!r})")
    return min(25.0, seconds)


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
    max_wait_seconds: float = 25.0
    region: str | None = None
    endpoint_url: str | None = None

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
            endpoint_url=e.get("GENAI_AWS_ENDPOINT_URL") or None)


def build_app(cfg: ApiConfig, clients: Mapping[str, Any] | None = None) -> ApiApp:
    """Wire the app from config; ``clients`` (service -> boto3 client) replaces the default clients."""
    import boto3

    from runtime.api.models import ManifestModels, StaticModels
    from runtime.jobs.store import JobStore

    made: dict[str, Any] = dict(clients or {})

    def client(service: str) -> Any:
        if service not in made:
            made[service] = boto3.client(service, region_name=cfg.region, endpoint_url=cfg.endpoint_url)
        return made[service]

    store = JobStore(cfg.job_table, client("dynamodb"))
    options = ApiOptions(auth_mode=cfg.auth_mode, quota_per_day=cfg.quota_per_day,
                         rate_per_second=cfg.rate_per_second, burst=cfg.burst, allow_loopback=cfg.allow_loopback,
                         enforce_known_models=cfg.enforce_known_models, max_wait_seconds=cfg.max_wait_seconds,
                         average_job_seconds=cfg.average_job_seconds)
    models = (ManifestModels(client("s3"), cfg.model_bucket, cfg.hot_models) if cfg.model_bucket
              else StaticModels(cfg.hot_models))
    return ApiApp(store, _producer(cfg, client), options, keys=_keys(cfg, client), models=models)


def _producer(cfg: ApiConfig, client: Any) -> Any:
    if cfg.queue_kind == "kafka":
        from runtime.queues.kafka_producer import KafkaJobProducer

        if not cfg.kafka_bootstrap:
            raise RuntimeError("GENAI_KAFKA_BOOTSTRAP is not set (queue kind kafka)")
        return KafkaJobProducer(cfg.kafka_bootstrap, topic=cfg.kafka_topic, iam_auth=cfg.kafka_iam,
                                region=cfg.region, create_topic=cfg.kafka_create_topic)
    from runtime.queues.sqs_producer import SqsJobProducer

    if not cfg.queue_url:
        raise RuntimeError("GENAI_QUEUE_URL is not set (queue kind sqs)")
    return SqsJobProducer(cfg.queue_url, client("sqs"))


def _keys(cfg: ApiConfig, client: Any) -> Any:
    if cfg.auth_mode != "api-key":
        return None
    if cfg.api_keys_file or cfg.api_keys:
        store = StaticKeyStore.from_file(cfg.api_keys_file) if cfg.api_keys_file else StaticKeyStore()
        for record in StaticKeyStore.from_keys(list(cfg.api_keys)).records.values():
            store.add(record)
        return store
    if cfg.api_keys_prefix:
        return SsmKeyStore(client("ssm"), cfg.api_keys_prefix, accept_untagged=cfg.accept_untagged_keys)
    return None


# --- event adapter ---------------------------------------------------------------------------------------
def _authorizer_principal(event: Mapping[str, Any]) -> tuple[bool, Principal | None]:
    """(an upstream authorizer ran, the principal it vouched for)."""
    authorizer = (event.get("requestContext") or {}).get("authorizer") or {}
    iam = authorizer.get("iam")
    if iam:
        return True, Principal(id=str(iam.get("userArn") or iam.get("userId") or "iam"), kind="iam")
    ctx = authorizer.get("lambda")
    if ctx is None:
        return False, None
    key_id = ctx.get("key_id")
    if not key_id:
        return True, None  # the authorizer let a request without credentials through: 401 below
    quota = ctx.get("quota_per_day")
    rate = ctx.get("rate_per_second")
    return True, Principal(id=str(key_id), kind="api-key", quota_per_day=int(quota) if quota else None,
                           rate_per_second=float(rate) if rate else None)


def to_request(event: Mapping[str, Any]) -> tuple[Request, bool]:
    ctx = event.get("requestContext") or {}
    http = ctx.get("http") or {}
    body = event.get("body") or ""
    try:
        raw = base64.b64decode(body) if event.get("isBase64Encoded") else body.encode("utf-8", "surrogatepass")
    except (ValueError, UnicodeError):
        raw = b"\x00invalid"
    headers = {str(k).lower(): str(v) for k, v in (event.get("headers") or {}).items()}
    authorized, principal = _authorizer_principal(event)
    domain = ctx.get("domainName") or headers.get("host") or ""
    proto = headers.get("x-forwarded-proto", "https").strip().lower()
    proto = proto if proto in ("http", "https") else "https"
    return Request(method=str(http.get("method") or "GET"), path=str(event.get("rawPath") or http.get("path") or "/"),
                   headers=headers, query=dict(event.get("queryStringParameters") or {}), body=raw,
                   principal=principal, base_url=f"{proto}://{domain}" if domain else "",
                   request_id=str(ctx.get("requestId") or ""), source_ip=str(http.get("sourceIp") or "")), authorized


def to_result(resp: Response) -> dict[str, Any]:
    body = resp.body if isinstance(resp.body, str | bytes) else json.dumps(resp.body, separators=(",", ":"),
                                                                          default=str)
    if isinstance(body, bytes):
        return {"statusCode": resp.status, "headers": {"Content-Type": resp.content_type, **resp.headers},
                "body": base64.b64encode(body).decode(), "isBase64Encoded": True}
    return {"statusCode": resp.status, "headers": {"Content-Type": resp.content_type, **resp.headers},
            "body": body, "isBase64Encoded": False}


def handle_event(event: Mapping[str, Any], app: ApiApp) -> dict[str, Any]:
    request, authorized = to_request(event)
    if authorized and request.principal is None and app.options.auth_mode != "none":
        # An authorizer ran and vouched for nobody: never fall back to the headers (401 unless public).
        request.headers = {k: v for k, v in request.headers.items() if k not in ("authorization", "x-api-key")}
    return to_result(app.handle(request))


_APP: ApiApp | None = None
_APP_LOCK = threading.Lock()


def get_app() -> ApiApp:
    global _APP
    with _APP_LOCK:
        if _APP is None:
            _APP = build_app(ApiConfig.from_env())
        return _APP


def lambda_handler(event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
    return handle_event(event, get_app())
