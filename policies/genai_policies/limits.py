"""AWS service limits the program depends on, which the mocks never enforce.

- ``api-integration-timeout``: an HTTP API stops waiting for an integration after at most 30 s
  (``timeoutMilliseconds`` 50..30,000, default 30,000). A Lambda behind it that may run longer is answered
  with a 503/504 while it still works; a sync wait (``Prefer: wait``, the handler's
  ``GENAI_MAX_WAIT_SECONDS``) must end inside the function's timeout, which must end inside the gateway's.
- ``sqs-message-size``: a queue's ``maxMessageSize`` is 1,024..1,048,576 bytes (default 262,144, 256 KiB,
  which moto does not apply: it defaults to 1 MiB); the queues the job API writes must accept the largest
  job message it admits (``jobMessageBytes``, the API's ``SQS_MAX_MESSAGE_BYTES``).
- ``lifecycle-hook-timeouts``: a hook's heartbeat is 30..7,200 s; with heartbeats recorded, an instance
  may wait at most min(48 h, 100 x heartbeat) (the hook's global timeout). The terminating hook must let
  the longest job (the larger of ``maxJobSeconds`` and ``longestJobSeconds``, from the stack) plus
  ``drainMarginSeconds`` finish within that.
"""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    StackValidationArgs,
    StackValidationPolicy,
)

from .common import as_list, settings
from .graph import get, number, of_type, referenced, seconds, strings

API = "aws:apigatewayv2/api:Api"
INTEGRATION = "aws:apigatewayv2/integration:Integration"
FUNCTION = "aws:lambda/function:Function"
QUEUE = "aws:sqs/queue:Queue"
GROUP = "aws:autoscaling/group:Group"
HOOK = "aws:autoscaling/lifecycleHook:LifecycleHook"
HTTP_API_MAX_TIMEOUT_MS = 30_000
HTTP_API_MIN_TIMEOUT_MS = 50
LAMBDA_DEFAULT_TIMEOUT = 3
SYNC_WAIT_VARIABLE = "GENAI_MAX_WAIT_SECONDS"  # runtime/api/environment.py API_VARIABLES["max_wait_seconds"]
JOB_QUEUE_VARIABLES = ("GENAI_QUEUE_URL", "GENAI_MODEL_GROUPS")  # where the job API finds the queues it writes
SQS_MIN_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES, SQS_DEFAULT_MESSAGE_BYTES = 1024, 1_048_576, 262_144
HEARTBEAT_MIN, HEARTBEAT_MAX, HEARTBEAT_DEFAULT = 30, 7200, 3600
GLOBAL_TIMEOUT_MAX = 48 * 3600
TERMINATING = "autoscaling:EC2_INSTANCE_TERMINATING"

MESSAGE_SCHEMA = PolicyConfigSchema(properties={
    "jobMessageBytes": {"type": "integer", "default": 262_144,
                        "description": "largest job message the job API admits (runtime/queues/base.py)"},
})
HOOK_SCHEMA = PolicyConfigSchema(properties={
    "maxJobSeconds": {"type": "integer", "description": "the stack's job time limit (maxJobSeconds; emitted)"},
    "longestJobSeconds": {"type": "integer", "description": (
        "the longest limit of any task (maxJobSeconds or taskMaxJobSeconds; emitted); used when given")},
    "drainMarginSeconds": {"type": "integer", "default": 120,
                           "description": "upload, record update and hand-back after the longest job"},
})


def global_timeout(heartbeat: float) -> float:
    """How long an instance may stay in a hook's wait state with heartbeats: min(48 h, 100 x heartbeat)."""
    return min(GLOBAL_TIMEOUT_MAX, 100 * heartbeat)


# --- API Gateway and Lambda -----------------------------------------------------------------------
def _validate_api_timeouts(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    apis, functions = of_type(args.resources, API), of_type(args.resources, FUNCTION)
    for integration in of_type(args.resources, INTEGRATION):
        api = referenced(integration, "apiId", apis)
        if not api or str(get(api[0].props, "protocolType") or "").upper() != "HTTP":
            continue
        raw = get(integration.props, "timeoutMilliseconds")
        limit_ms = number(raw, HTTP_API_MAX_TIMEOUT_MS)
        if limit_ms is None:
            continue
        if not HTTP_API_MIN_TIMEOUT_MS <= limit_ms <= HTTP_API_MAX_TIMEOUT_MS:
            report_violation(f"integration '{integration.name}': timeoutMilliseconds {limit_ms:g} is outside the HTTP "
                             f"API's {HTTP_API_MIN_TIMEOUT_MS}..{HTTP_API_MAX_TIMEOUT_MS}; AWS rejects it.",
                             integration.urn)
            limit_ms = min(limit_ms, HTTP_API_MAX_TIMEOUT_MS)
        for fn in referenced(integration, "integrationUri", functions):
            timeout = number(get(fn.props, "timeout"), LAMBDA_DEFAULT_TIMEOUT)
            if timeout is not None and timeout * 1000 > limit_ms:
                report_violation(
                    f"function '{fn.name}' may run {seconds(timeout)}, but the HTTP API behind integration "
                    f"'{integration.name}' stops waiting after {seconds(limit_ms / 1000)}: clients get a 503 while "
                    f"it still works. Keep the function timeout within the integration timeout (at most 30 s).",
                    fn.urn)
            variables = get(get(fn.props, "environment") or {}, "variables") or {}
            wait = number(get(variables, SYNC_WAIT_VARIABLE))
            if wait is not None and timeout is not None and wait >= timeout:
                report_violation(
                    f"function '{fn.name}': the sync wait {SYNC_WAIT_VARIABLE}={wait:g} does not end before its "
                    f"{seconds(timeout)} timeout: a Prefer: wait request would be cut off instead of answered "
                    f"202. Set the wait below the function timeout.", fn.urn)


# --- SQS -------------------------------------------------------------------------------------------
def _job_queue_refs(functions: list[Any]) -> set[str]:
    refs: set[str] = set()
    for fn in functions:
        variables = get(get(fn.props, "environment") or {}, "variables") or {}
        for name in JOB_QUEUE_VARIABLES:
            refs |= set(strings(get(variables, name)))
    return refs


def _validate_message_size(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = settings(args, MESSAGE_SCHEMA)
    refs = _job_queue_refs(of_type(args.resources, FUNCTION))
    for queue in of_type(args.resources, QUEUE):
        raw = get(queue.props, "maxMessageSize")
        size = number(raw, SQS_DEFAULT_MESSAGE_BYTES)
        if size is None:
            continue
        if not SQS_MIN_MESSAGE_BYTES <= size <= SQS_MAX_MESSAGE_BYTES:
            report_violation(f"queue '{queue.name}': maxMessageSize {size:g} is outside SQS's "
                             f"{SQS_MIN_MESSAGE_BYTES}..{SQS_MAX_MESSAGE_BYTES} bytes; AWS rejects it.", queue.urn)
        url, name = get(queue.props, "url"), get(queue.props, "name")
        writes = any(isinstance(v, str) and v and v in refs for v in (url, name))
        if writes and size < config["jobMessageBytes"]:
            unset = " (unset: AWS's default, 256 KiB)" if raw is None else ""
            report_violation(
                f"queue '{queue.name}' takes messages of at most {size:g} bytes{unset}, but the job API admits job "
                f"messages up to {config['jobMessageBytes']} bytes: SQS would refuse the larger jobs after the API "
                f"accepted them. Set maxMessageSize to at least {config['jobMessageBytes']}.", queue.urn)


# --- Auto Scaling lifecycle hooks ------------------------------------------------------------------
def _hooks(args: StackValidationArgs) -> list[tuple[str, Any, str]]:
    """(owner description, hook props, urn) for every hook: LifecycleHook resources and groups' initial hooks."""
    out = [(f"lifecycle hook '{h.name}'", h.props, h.urn) for h in of_type(args.resources, HOOK)]
    for group in of_type(args.resources, GROUP):
        for hook in as_list(get(group.props, "initialLifecycleHooks")):
            if hasattr(hook, "get"):
                out.append((f"group '{group.name}' hook '{get(hook, 'name')}'", hook, group.urn))
    return out


def _validate_hook_timeouts(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    config = settings(args, HOOK_SCHEMA)
    given = [n for n in (number(config.get("maxJobSeconds")), number(config.get("longestJobSeconds"))) if n is not None]
    longest = max(given) if given else None
    drain = (longest + config["drainMarginSeconds"]) if longest is not None else None
    for owner, hook, urn in _hooks(args):
        heartbeat = number(get(hook, "heartbeatTimeout"), HEARTBEAT_DEFAULT)
        if heartbeat is None:
            continue
        if not HEARTBEAT_MIN <= heartbeat <= HEARTBEAT_MAX:
            report_violation(f"{owner}: heartbeatTimeout {heartbeat:g} s is outside Auto Scaling's "
                             f"{HEARTBEAT_MIN}..{HEARTBEAT_MAX} s; AWS rejects it. Record heartbeats to wait longer.",
                             urn)
            heartbeat = min(max(heartbeat, HEARTBEAT_MIN), HEARTBEAT_MAX)
        if get(hook, "lifecycleTransition") == TERMINATING and drain is not None and drain > global_timeout(heartbeat):
            report_violation(
                f"{owner}: a terminating instance may wait at most {global_timeout(heartbeat):g} s "
                f"(min(48 h, 100 x heartbeat {heartbeat:g} s)), but the longest job ({longest:g} s) "
                f"plus the drain margin needs {drain:g} s: scale-in would end jobs mid-run. Raise the heartbeat "
                f"(at most {HEARTBEAT_MAX} s) or lower maxJobSeconds / taskMaxJobSeconds.", urn)


api_integration_timeout = StackValidationPolicy(
    name="api-integration-timeout",
    description="Requires HTTP API integration timeouts within 30 s, each Lambda behind one to end within it, and "
                "its sync wait to end within the Lambda timeout.",
    enforcement_level=EnforcementLevel.MANDATORY, validate=_validate_api_timeouts)
sqs_message_size = StackValidationPolicy(
    name="sqs-message-size",
    description="Requires SQS message sizes within AWS's range and job queues that take the largest job message.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=MESSAGE_SCHEMA, validate=_validate_message_size)
lifecycle_hook_timeouts = StackValidationPolicy(
    name="lifecycle-hook-timeouts",
    description="Requires hook heartbeats of 30..7200 s and a terminating hook whose global timeout covers the "
                "longest job.",
    enforcement_level=EnforcementLevel.MANDATORY, config_schema=HOOK_SCHEMA, validate=_validate_hook_timeouts)

POLICIES = [api_integration_timeout, sqs_message_size, lifecycle_hook_timeouts]
