"""Lambda entry point (API Gateway HTTP API, payload format 2.0) and the event <-> app adapter.

``lambda_handler(event, context)`` -> ``handle_event(event, app)``; the local server calls the same
``handle_event`` with events it builds from plain HTTP, so local mode runs this exact code.

Configuration comes from environment variables (``ApiConfig.from_env``, runtime/api/environment.py lists
them), read on the first request (never at import), and the app is cached for the life of the Lambda
instance. AWS clients come from ``runtime.aws_clients`` (profile ``api``: timeouts that fit a 29 s Lambda).
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any

from runtime import aws_clients
from runtime.api.app import ApiApp, ApiOptions, Request, Response
from runtime.api.auth import SCOPES, TENANT_SCOPE, Principal, SsmKeyStore, StaticKeyStore
from runtime.api.environment import ApiConfig
from runtime.api.problems import ApiError
from runtime.jobs.priorities import ceiling_of

__all__ = ["ApiConfig", "build_app", "handle_event", "lambda_handler"]

log = logging.getLogger(__name__)


def build_app(cfg: ApiConfig, clients: Mapping[str, Any] | None = None) -> ApiApp:
    """Wire the app from config; ``clients`` (service -> boto3 client) replaces the default clients."""
    from runtime.api.models import ManifestModels, StaticModels
    from runtime.jobs.key_use import KeyUse
    from runtime.jobs.store import JobStore

    made: dict[str, Any] = dict(clients or {})

    def client(service: str) -> Any:
        if service not in made:
            made[service] = aws_clients.client(service, profile="api", region=cfg.region,
                                               endpoint_url=cfg.endpoint_url)
        return made[service]

    store = JobStore(cfg.job_table, client("dynamodb"))
    options = ApiOptions(auth_mode=cfg.auth_mode, quota_per_day=cfg.quota_per_day,
                         rate_per_second=cfg.rate_per_second, burst=cfg.burst, allow_loopback=cfg.allow_loopback,
                         enforce_known_models=cfg.enforce_known_models, max_wait_seconds=cfg.max_wait_seconds,
                         average_job_seconds=cfg.average_job_seconds, served_tasks=cfg.tasks,
                         lora_tasks=cfg.lora_tasks,
                         video_formats=cfg.video_formats, video_model_kinds=cfg.video_model_kinds,
                         budget_usd_per_day=cfg.budget_usd_per_day, hourly_usd=cfg.hourly_usd,
                         default_deadline_sync_seconds=cfg.deadline_sync_seconds,  # issue 44 (lane D)
                         default_deadline_async_seconds=cfg.deadline_async_seconds,
                         admission_max_wait_seconds=cfg.admission_max_wait_seconds)
    models = (ManifestModels(client("s3"), cfg.model_bucket, cfg.hot_models) if cfg.model_bucket
              else StaticModels(cfg.hot_models))
    events = _event_log(cfg, client)
    return ApiApp(store, _producer(cfg, client), options, keys=_keys(cfg, client), models=models,
                  workflow_checker=_workflow_checker(cfg, client), events=events, links=_output_links(cfg, client),
                  deleter=_deleter(cfg, client, store),
                  key_use=KeyUse(cfg.job_table, client("dynamodb")))  # issue 43: keys' last-used day


def _deleter(cfg: ApiConfig, client: Any, store: Any) -> Any:
    """DELETE /v1/jobs/{id} (issue 44) when the stack names its outputs bucket."""
    from runtime.jobs.deletion import JobDeleter, S3JobObjects

    return JobDeleter(store, S3JobObjects(client("s3"), cfg.outputs_bucket)) if cfg.outputs_bucket else None


def _output_links(cfg: ApiConfig, client: Any) -> Any:
    """Output URLs made when handed out (issue 43): on the CDN, signed to expire when the stack signs them."""
    from runtime.jobs.cdn_signing import output_links

    return output_links(cfg.outputs_base_url, cfg.output_signing_key_id, cfg.output_signing_key_parameter,
                        lambda: client("ssm"), cfg.output_url_ttl_seconds)


def _workflow_checker(cfg: ApiConfig, client: Any) -> Any:
    """comfyui-workflow jobs checked at submit against the image's node catalog and the model store (issue 41)."""
    from runtime.api.workflow_check import WorkflowChecker, s3_catalog, s3_manifest_files

    return WorkflowChecker(s3_catalog(client("s3"), cfg.node_catalog) if cfg.node_catalog else None,
                           s3_manifest_files(client("s3"), cfg.model_bucket) if cfg.model_bucket else None)


def _event_log(cfg: ApiConfig, client: Any) -> Any:
    """The job event log (issue 38) when the stack has one."""
    if not cfg.event_table:
        return None
    from runtime.jobs.events import EventLog

    return EventLog(cfg.event_table, client("dynamodb"))


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
    if not cfg.model_groups:
        return SqsJobProducer(cfg.queue_url, client("sqs"))
    from runtime.queues.affinity import DEFAULT_GROUP, ModelGroups
    from runtime.queues.routing import RoutingProducer, sqs_group_queue_url

    sqs = client("sqs")
    producers = {DEFAULT_GROUP: SqsJobProducer(cfg.queue_url, sqs),
                 **{g: SqsJobProducer(sqs_group_queue_url(cfg.queue_url, g), sqs) for g, _ in cfg.model_groups}}
    return RoutingProducer(producers, ModelGroups(dict(cfg.model_groups)))


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
                           rate_per_second=float(rate) if rate else None, **_key_ownership(ctx),
                           max_priority=ceiling_of(ctx.get("max_priority")))  # issue 44 (lane D)


def _key_ownership(ctx: Mapping[str, Any]) -> dict[str, str]:
    """Issue 43: the tenant and scope the authorizer vouched for (a context without them: tenant = key id, and
    the tenant scope, never more)."""
    scope = str(ctx.get("scope") or "")
    return {"tenant": str(ctx.get("tenant") or ""), "scope": scope if scope in SCOPES else TENANT_SCOPE}


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
    """The gateway's response; bodies are strict JSON (a value JSON cannot carry, such as infinity, is a bug:
    logged and answered 500 rather than sent as ``Infinity``, which clients' parsers refuse)."""
    try:
        body = resp.body if isinstance(resp.body, str | bytes) else json.dumps(
            resp.body, separators=(",", ":"), default=str, allow_nan=False)
    except ValueError:
        log.exception("a %s response body is not strict JSON", resp.status)
        error = ApiError(500, "internal", "Internal Server Error", "an unexpected error occurred")
        resp = Response(500, error.body(), content_type="application/problem+json")
        body = json.dumps(resp.body, separators=(",", ":"))
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
