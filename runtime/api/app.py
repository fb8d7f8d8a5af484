"""Routing and the work of the job API, free of any transport (Lambda event, local HTTP server, tests).

Routes (all JSON; errors are problem details, see ``problems``):

====  ===========================  ============================================================  =====
POST  /v1/jobs                     create a job; ``Prefer: wait=N`` waits up to N s (max 25)     auth
GET   /v1/jobs                     the caller's jobs, newest first (``limit``, ``status``, ``cursor``) auth
GET   /v1/jobs/{id}                the job, with queue info while queued                         auth
GET   /v1/jobs/{id}/events         its events after a cursor, long-polled (``after``, ``wait``)    auth
POST  /v1/jobs/{id}/cancel         cancel (queued: at once; running: the worker stops it)        auth
POST  /v1/quotes                   expected wait and cost of a job body now; creates nothing     auth
GET   /v1/models                   models this fleet serves                                      auth
GET   /v1/health                   liveness (no dependency calls)                                none
GET   /v1/openapi.json             the OpenAPI 3.1 document                                      none
====  ===========================  ============================================================  =====

Status codes: 200, 202 (accepted / still running after the wait), 400 (malformed JSON, bad header),
401/403 (auth), 404 (unknown route or job; jobs of other keys look unknown), 405 (wrong method, with
``Allow``), 409 (the first request with this Idempotency-Key is still being processed, with
``Retry-After``), 413 (body too large, or the queue message it makes would be), 415 (not JSON), 422 (a
rule broken, or an Idempotency-Key reused with another body), 429 (write or read rate of the key, daily
quota, failed authentications of the address, or ``overloaded``: the job's expected wait exceeds its deadline
or the stack's bound, with ``Retry-After``), 503 (store or queue down, with
``Retry-After``). A 500 means a bug: client input never causes one (tests/integration/test_api_fuzz.py,
test_api_abuse.py, the schemathesis run and ``make fuzz``).

Create, in order: validate; refuse a priority above the key's ceiling (403); build the queue message and
refuse it (413) when it would not fit the
queue, before anything is written; look the Idempotency-Key up (a replay is never charged quota);
admission control (issue 44: 429 when the expected wait exceeds the job's deadline or the stack's bound);
charge the daily quota; write the job (and key) in one transaction; send. When the send fails, for any
reason, the job, its Idempotency-Key and its quota unit are undone before the error is answered. The
request that writes a job holds a short send lease in the record; a replay sends a job only after
claiming an expired lease with a conditional write, so concurrent replays enqueue a job once and a
creator that died is still covered.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.api.admission import admission_verdict, refuse
from runtime.api.auth import FailureLimiter, KeyStore, Principal, TokenBucket, authenticate
from runtime.api.fleet import fleet_view, require_operator
from runtime.api.job_events_feed import EventFeed, parse_events_query
from runtime.api.job_list import ListQuery, encode_cursor, parse_list_query
from runtime.api.models import ModelsSource, StaticModels
from runtime.api.openapi import API_VERSION, document
from runtime.api.problems import ApiError
from runtime.api.quotes import FleetState, quote
from runtime.api.request_headers import check_content_type, idempotency_key, prefer_wait
from runtime.api.sync_wait import WaitPacer
from runtime.api.video_capabilities import refuse_unserved_video
from runtime.api.workflow_check import WorkflowChecker
from runtime.jobs.deadlines import DEADLINE_AT, deadline_fields
from runtime.jobs.deletion import JobDeleter, JobNotFinalError
from runtime.jobs.errors import IdempotencyConflictError, JobError, StoreUnavailableError, ValidationError
from runtime.jobs.events import EventLog
from runtime.jobs.ids import is_job_id
from runtime.jobs.key_use import KeyUse
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.priorities import DEFAULT_PRIORITY, within
from runtime.jobs.retention import expired
from runtime.jobs.schema import MAX_BODY_BYTES, fingerprint, parse_json_body, validate_job
from runtime.jobs.spend import TenantSpend, utc_day
from runtime.jobs.store import CANCELED, FINAL, QUEUED, RUNNING, JobStore, new_record
from runtime.jobs.views import public_view
from runtime.queues.base import SQS_MAX_MESSAGE_BYTES, JobQueueProducer, QueueError, QueueMessage

log = logging.getLogger(__name__)

MAX_WAIT_SECONDS = 25.0  # API Gateway HTTP APIs end integrations at 30 s
# The send lease of the request that writes a job: replays wait it out (409) before sending themselves.
SEND_LEASE_SECONDS = 15.0
# enqueued_at is re-stamped at send time; its decimal form may be a few characters longer than measured.
_MESSAGE_SLACK_BYTES = 32
# Reads (GET /v1/jobs/{id}, GET /v1/models) per key per instance: sized for a client that long-polls the
# events of a few dozen jobs at once (one request per job per poll) and for a console that refreshes a page
# of 50 jobs every few seconds (a burst of 100 when the page opens, then about 10/s).
READ_RATE_PER_SECOND = 20.0
READ_BURST = 100.0


@dataclass
class Request:
    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    principal: Principal | None = None  # set by the transport when an upstream authorizer vouched
    base_url: str = ""
    request_id: str = ""
    source_ip: str = ""  # the client address the gateway saw (per-source limit on failed authentications)
    caller: Principal | None = None  # issue 43: who the app found calling (its last-used day is recorded on success)


@dataclass
class Response:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


@dataclass
class ApiOptions:
    auth_mode: str = "api-key"  # api-key | iam | none (local mode only)
    quota_per_day: int | None = None
    rate_per_second: float | None = None  # writes per key (create, cancel) when the key has no rate of its own
    burst: float | None = None
    read_rate_per_second: float | None = READ_RATE_PER_SECOND  # None: reads are not limited
    read_burst: float | None = READ_BURST
    allow_loopback: bool = False
    enforce_known_models: bool = False
    served_tasks: tuple[str, ...] = ()  # the tasks the fleet's backend serves; (): every task
    lora_tasks: tuple[str, ...] | None = None  # the tasks whose jobs may name LoRAs; None: every task (issue 40)
    video_formats: tuple[str, ...] = ()  # the video output formats it writes; (): every one
    video_model_kinds: tuple[str, ...] = ()  # the model store kinds it makes a video from; (): any model
    max_wait_seconds: float = MAX_WAIT_SECONDS
    poll_interval_seconds: float = 0.05  # first read of a sync wait; later reads: runtime.api.sync_wait
    average_job_seconds: float = 3.0
    budget_usd_per_day: float | None = None  # per tenant (the key record's tenant, issue 43); None: no budget
    hourly_usd: float | None = None  # the fleet's instance price (the stack's table): a job's expected cost
    # issue 44 (lane D): deadlines and admission control (runtime.jobs.deadlines, runtime.api.admission)
    default_deadline_sync_seconds: float | None = None  # a job sent with Prefer: wait and no deadline_seconds
    default_deadline_async_seconds: float | None = None  # any other job without deadline_seconds
    admission_max_wait_seconds: float | None = None  # refuse (429) a job expected to wait longer; None: no bound


class ApiApp:
    """The job API. Dependencies are injected; nothing happens at import or construction."""

    def __init__(self, store: JobStore, producer: JobQueueProducer, options: ApiOptions | None = None,
                 keys: KeyStore | None = None, models: ModelsSource | None = None,
                 openapi: Callable[[], dict[str, Any]] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, workflow_checker: WorkflowChecker | None = None,
                 events: EventLog | None = None, links: OutputLinks | None = None,
                 key_use: KeyUse | None = None, deleter: JobDeleter | None = None):
        self.store, self.producer = store, producer
        self.options = options or ApiOptions()
        self.keys, self.models = keys, models or StaticModels(())
        self._openapi = openapi
        self._clock, self._sleep = clock, sleep
        self.workflow_checker = workflow_checker  # None: comfyui-workflow graphs are not checked at submit
        self.pacer = WaitPacer()
        # One bucket per key in each: a key's rate and burst are its own and never bind another key.
        self.write_limits, self.read_limits = TokenBucket(), TokenBucket()
        self.auth_failures = FailureLimiter()
        self.events = events  # the job event log (issue 38); None: no events route, no progress in views
        # Output URLs are made here when handed out (issue 43); none given: public links under no CDN (tests)
        self.links = links or OutputLinks("")
        self._feed = EventFeed(events, store.get, self.links, sleep=sleep) if events is not None else None
        self.key_use = key_use  # issue 43: where keys' last-used days are recorded (None: nowhere)
        self.deleter = deleter  # issue 44: DELETE /v1/jobs/{id} (runtime/jobs/deletion.py); None: not offered
        self._routes: list[tuple[re.Pattern[str], dict[str, Callable[..., Response]]]] = [
            (re.compile(r"^/v1/health$"), {"GET": self.health}),
            (re.compile(r"^/v1/openapi\.json$"), {"GET": self.openapi}),
            (re.compile(r"^/v1/models$"), {"GET": self.list_models}),
            (re.compile(r"^/v1/jobs$"), {"POST": self.create_job, "GET": self.list_jobs}),
            (re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)$"), {"GET": self.get_job, "DELETE": self.delete_job}),
            (re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)/cancel$"), {"POST": self.cancel_job}),
            (re.compile(r"^/v1/jobs/(?P<job_id>[^/]+)/events$"), {"GET": self.job_events}),
            (re.compile(r"^/v1/quotes$"), {"POST": self.create_quote}),
            (re.compile(r"^/v1/fleet$"), {"GET": self.fleet}),  # issue 43: operator keys only
        ]

    # --- dispatch ------------------------------------------------------------------------------------
    def handle(self, req: Request) -> Response:
        started = time.monotonic()
        try:
            resp = self._dispatch(req)
        except ApiError as exc:
            resp = _problem(exc)
        except ValidationError as exc:
            resp = _problem(_validation_error(exc))
        except (StoreUnavailableError, QueueError) as exc:
            log.warning("dependency unavailable: %s", exc)
            resp = _problem(ApiError(503, "unavailable", "Service Unavailable", "try again shortly",
                                     headers={"Retry-After": "2"}))
        except Exception:  # last line: log the bug, answer 500 without internals
            log.exception("unhandled error in %s %s", req.method, req.path)
            resp = _problem(ApiError(500, "internal", "Internal Server Error", "an unexpected error occurred"))
        self._note_key_use(req, resp)
        log.info("request", extra={"request_id": req.request_id, "method": req.method, "path": req.path,
                                   "status": resp.status, "ms": round((time.monotonic() - started) * 1000, 1)})
        return resp

    def _dispatch(self, req: Request) -> Response:
        path = req.path.rstrip("/") if req.path != "/" else req.path
        for pattern, methods in self._routes:
            m = pattern.match(path)
            if not m:
                continue
            method = req.method.upper()
            if method not in methods:
                raise ApiError(405, "method-not-allowed", "Method Not Allowed",
                               f"{method} is not allowed on {path}", headers={"Allow": ", ".join(sorted(methods))})
            return methods[method](req, **m.groupdict())
        raise ApiError(404, "not-found", "Not Found", "no such route; see /v1/openapi.json")

    # --- auth and limits -----------------------------------------------------------------------------
    def _principal(self, req: Request) -> Principal:
        req.caller = self._caller(req)
        return req.caller

    def _note_key_use(self, req: Request, resp: Response) -> None:
        """Issue 43: a key's day of use, recorded for requests it made that succeeded (a refused request writes
        nothing); at most one conditional write per key per instance per day (runtime.jobs.key_use)."""
        if req.caller is not None and req.caller.kind == "api-key" and self.key_use is not None and resp.status < 400:
            self.key_use.note(req.caller.id)

    def _caller(self, req: Request) -> Principal:
        mode = self.options.auth_mode
        if req.principal is not None:
            return req.principal
        if mode == "none":
            return Principal(id="anonymous", kind="anonymous")
        if mode == "iam":
            raise ApiError(401, "unauthorized", "Unauthorized", "sign the request with AWS SigV4 (IAM auth)")
        if self.keys is None:
            raise ApiError(503, "auth-unavailable", "Service Unavailable", "API key store is not configured")
        return authenticate(req.headers, self.keys, source=req.source_ip or None, failures=self.auth_failures)

    def _rate_limit(self, principal: Principal) -> None:
        """Writes: the key's own ``rate_per_second`` (burst: one second's worth), else the stack's rate and burst."""
        o = self.options
        if principal.rate_per_second:
            self._take(self.write_limits, principal, principal.rate_per_second, None, "request")
        elif o.rate_per_second:
            self._take(self.write_limits, principal, o.rate_per_second, o.burst, "request")

    def _read_limit(self, principal: Principal) -> None:
        o = self.options
        if o.read_rate_per_second:
            self._take(self.read_limits, principal, o.read_rate_per_second, o.read_burst, "read")

    @staticmethod
    def _take(buckets: TokenBucket, principal: Principal, rate: float, burst: float | None, what: str) -> None:
        ok, wait = buckets.allow(principal.id, rate, burst)
        if not ok:
            raise ApiError(429, "rate-limited", "Too Many Requests", f"{what} rate limit for this key exceeded",
                           headers={"Retry-After": str(max(1, round(wait + 0.5)))})

    # --- routes --------------------------------------------------------------------------------------
    def health(self, req: Request) -> Response:
        return Response(200, {"status": "ok", "version": API_VERSION, "time": self._clock()})

    def openapi(self, req: Request) -> Response:
        return Response(200, (self._openapi or document)())

    def list_models(self, req: Request) -> Response:
        self._read_limit(self._principal(req))
        source, models = self.models.list_models()
        return Response(200, {"source": source, "models": models})

    def _lora_catalog(self, body: Any) -> dict[str, dict[str, Any]] | None:
        """The model catalog (id -> GET /v1/models entry) the job's LoRAs are checked against (issue 40): read when
        the job names LoRAs or the fleet enforces known models (then ``model`` must not be a LoRA)."""
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if not (self.options.enforce_known_models or (isinstance(inputs, dict) and inputs.get("loras"))):
            return None
        return {m["id"]: m for m in self.models.list_models()[1]}

    def create_job(self, req: Request) -> Response:
        principal = self._principal(req)
        self._rate_limit(principal)
        check_content_type(req.headers)
        if len(req.body) > MAX_BODY_BYTES:
            raise ApiError(413, "too-large", "Payload Too Large", f"the body must be at most {MAX_BODY_BYTES} bytes")
        idem_key = idempotency_key(req.headers)
        wait = prefer_wait(req.headers, self.options.max_wait_seconds)
        spec, warning = self._checked_spec(parse_json_body(req.body))
        self._check_priority(spec, principal)
        record = new_record(spec, owner=principal.tenant, now=self._clock())
        record.update(deadline_fields(record["created_at"], self._deadline_seconds(spec, wait)))
        self._check_message_size(QueueMessage(job_id=record["job_id"], job=spec, enqueued_at=record["created_at"]))
        record, created = self._create(record, spec, principal, idem_key)
        headers = {"Location": f"/v1/jobs/{record['job_id']}"}
        if warning:
            headers["Warning"] = warning
        if not created:
            headers["Idempotent-Replayed"] = "true"
        expected = self.pacer.expected(record)  # this job shape's learnt run time (None: not seen yet)
        if wait > 0 and record["status"] not in FINAL and not (expected is not None and expected > wait):
            headers["Preference-Applied"] = f"wait={wait:g}"
            record = self._wait_for(record["job_id"], wait) or record
        # A job expected to outlast the wait (a video that runs minutes) is answered 202 at once: waiting
        # would hold the request (and a Lambda) for nothing.
        status = 200 if record["status"] in FINAL else 202
        if status == 202:
            headers["Retry-After"] = str(max(1, round(expected or self.options.average_job_seconds)))
        return Response(status, self._view(record, req), headers)

    def _checked_spec(self, body: Any) -> tuple[dict[str, Any], str | None]:
        """The job spec of a create (or a quote) body after every rule of this fleet (422s), and the ``Warning``
        header value when a workflow could not be judged."""
        known = None
        if self.options.enforce_known_models:
            known = {m["id"] for m in self.models.list_models()[1]} or None
        spec = validate_job(body, allow_loopback=self.options.allow_loopback, known_models=known,
                            served_tasks=self.options.served_tasks or None, model_catalog=self._lora_catalog(body),
                            lora_tasks=self.options.lora_tasks)
        refuse_unserved_video(spec, self.options.video_formats, self.options.video_model_kinds, self.models)
        return spec, self._check_workflow(spec)

    def _is_hot(self, model: str) -> bool:
        """Every worker loads ``model`` at boot (the stack's hot models, as ``GET /v1/models`` lists them)."""
        return any(m["id"] == model and m.get("hot") for m in self.models.list_models()[1])

    def _check_workflow(self, spec: dict[str, Any]) -> str | None:
        """A comfyui-workflow graph against the fleet image's node catalog and the model store (issue 41): 422 naming
        each node and its missing class or file; the ``Warning`` header value when it could not be judged."""
        if self.workflow_checker is None or spec.get("task") != "comfyui-workflow":
            return None
        verdict = self.workflow_checker.check(spec["inputs"]["workflow"])
        if verdict.problems:
            nodes = ", ".join(sorted({p.node for p in verdict.problems}))
            raise ApiError(422, "workflow-not-runnable", "Unprocessable Content",
                           f"this fleet cannot run the workflow: node(s) {nodes} need a node class or model file it "
                           "lacks (see errors)", errors=[p.error() for p in verdict.problems])
        return verdict.header()

    def create_quote(self, req: Request) -> Response:
        """``POST /v1/quotes``: the job body's expected wait and cost on the fleet now (runtime.api.quotes); the
        body is validated as a create would (422 alike), and nothing is written."""
        principal = self._principal(req)
        self._rate_limit(principal)
        check_content_type(req.headers)
        if len(req.body) > MAX_BODY_BYTES:
            raise ApiError(413, "too-large", "Payload Too Large", f"the body must be at most {MAX_BODY_BYTES} bytes")
        spec, warning = self._checked_spec(parse_json_body(req.body))
        return Response(200, {"model": spec["model"], "task": spec["task"], **self._quote(spec, principal)},
                        {"Warning": warning} if warning else {})

    def _quote(self, spec: dict[str, Any], principal: Principal) -> dict[str, Any]:
        """The quote document of ``spec`` on the fleet now (runtime.api.quotes): ``POST /v1/quotes`` and the
        admission control of a create (issue 44) read the same estimate."""
        measured = self.pacer.expected(new_record(spec, owner=principal.tenant, now=self._clock()))
        service_s, source = (measured, "measured (recent jobs of this model and shape)") if measured is not None \
            else (self.options.average_job_seconds, "averageJobSeconds (stack config)")
        try:
            depth = self.producer.approximate_depth()
        except QueueError:
            depth = None
        state = FleetState(waiting=depth.waiting if depth else None, in_flight=depth.in_flight if depth else None,
                           running=self.store.count_running())
        return quote(state, service_s, source, self.options.hourly_usd, model_hot=self._is_hot(spec["model"]))

    # -- deadlines and admission control (issue 44, lane D) ------------------------------------------------
    def _deadline_seconds(self, spec: Mapping[str, Any], wait: float) -> float | None:
        """The job's deadline: its own ``deadline_seconds``, else the stack's default for a sync (``Prefer:
        wait``) or an async create; None: no deadline."""
        if spec.get("deadline_seconds") is not None:
            return float(spec["deadline_seconds"])
        o = self.options
        return o.default_deadline_sync_seconds if wait > 0 else o.default_deadline_async_seconds

    @staticmethod
    def _check_priority(spec: Mapping[str, Any], principal: Principal) -> None:
        """403 naming the caller's ceiling when the job's priority is above it (runtime.jobs.priorities)."""
        priority = spec.get("priority") or DEFAULT_PRIORITY
        if not within(priority, principal.max_priority):
            raise ApiError(403, "priority-above-ceiling", "Forbidden",
                           f"priority {priority} is above this key's ceiling max_priority={principal.max_priority}; "
                           f"send {principal.max_priority} or lower, or have the key's max_priority raised "
                           "(genai-stack api-key --max-priority)",
                           extra={"max_priority": principal.max_priority, "priority": priority})

    def _admission(self, record: Mapping[str, Any], spec: dict[str, Any], principal: Principal) -> None:
        """429 ``overloaded`` (runtime.api.admission) when the job is expected to wait longer than its deadline or
        the stack's bound; asked before anything is written. Free when neither applies (no queue read)."""
        deadline = float(record[DEADLINE_AT]) - float(record["created_at"]) if DEADLINE_AT in record else None
        if deadline is None and self.options.admission_max_wait_seconds is None:
            return
        verdict = admission_verdict(self._quote(spec, principal), deadline, self.options.admission_max_wait_seconds)
        if not verdict.admitted:
            raise refuse(verdict)

    def _check_message_size(self, message: QueueMessage) -> None:
        """413 when the queue message (as the producer sends it) would exceed the queue's limit.

        Measured on the message itself: JSON escapes non-ASCII text (an emoji takes 12 bytes, a CJK
        character 6), so a body under the request limit can still make a message over the queue's.
        """
        limit = min(self.producer.max_message_bytes or SQS_MAX_MESSAGE_BYTES, SQS_MAX_MESSAGE_BYTES)
        size = self.producer.message_size(message) + _MESSAGE_SLACK_BYTES
        if size > limit:
            raise ApiError(413, "too-large", "Payload Too Large",
                           f"the job makes a queue message of about {size} bytes; the queue takes at most {limit}. "
                           f"Non-ASCII text counts up to 3 times its UTF-8 size; pass large images by URL",
                           errors=[{"field": "(body)", "rule": "max-message-size",
                                    "message": f"queue message of {size} bytes exceeds {limit}"}])

    def _create(self, record: dict[str, Any], spec: dict[str, Any], principal: Principal,
                idem_key: str | None) -> tuple[dict[str, Any], bool]:
        fp = fingerprint(spec) if idem_key else None
        quota = self._charged(principal)
        charged = False
        try:
            if idem_key is not None:  # a replay is answered before any quota is charged
                existing = self.store.find_idempotent(principal.tenant, idem_key, fp)
                if existing is not None:
                    return self._replayed(existing, spec, principal, idem_key), False
                record["send_lease_until"] = self._clock() + SEND_LEASE_SECONDS
            self._admission(record, spec, principal)  # issue 44: before any quota, budget or write
            charged = self._admit(principal, record, quota)
            ours = record
            record, created = self.store.create(record, idempotency_key=idem_key, fingerprint=fp)
        except IdempotencyConflictError as exc:
            self._release_budget(principal, record)
            if charged:  # lost a race to a request with the same key and a different body
                self.store.refund_daily_quota(principal.tenant)
            raise ApiError(422, "idempotency-key-reused", "Unprocessable Content",
                           "this Idempotency-Key was already used with a different request body",
                           extra={"job_id": exc.job_id}) from exc
        if not created:  # another request with this key won the write between our lookup and ours
            self._release_budget(principal, ours)
            if charged:
                self.store.refund_daily_quota(principal.tenant)
            return self._replayed(record, spec, principal, idem_key), False
        try:
            self.producer.send(QueueMessage(job_id=record["job_id"], job=spec, enqueued_at=self._clock()))
        except Exception:  # the queue refused it, or a bug: never leave a job nobody will run
            self._undo(record, principal, idem_key, charged)
            raise
        if idem_key is not None:  # only a job with an Idempotency-Key can be replayed, so only those need the mark
            self._mark_enqueued(record["job_id"])
        return record, True

    def _undo(self, record: dict[str, Any], principal: Principal, idem_key: str | None, charged: bool) -> None:
        """Delete a job that was written but not sent, free its Idempotency-Key and give its quota unit back."""
        try:
            self.store.abandon(record, idempotency_key=idem_key)
            self._release_budget(principal, record)
            if charged:
                self.store.refund_daily_quota(principal.tenant)
        except Exception:  # the error that brought us here is the one the client gets
            log.exception("could not undo job %s after its send failed", record["job_id"])

    def _admit(self, principal: Principal, record: dict[str, Any], quota: int | None) -> bool:
        """Charge the daily quota, then reserve the job in its tenant's budget; 429 when either is used up (a
        refusal by the budget gives the quota unit back). True when a quota unit was charged."""
        charged = False
        if quota:
            if not self.store.consume_daily_quota(principal.tenant, quota):
                raise ApiError(429, "quota-exceeded", "Too Many Requests", f"daily quota of {quota} jobs used up",
                               headers={"Retry-After": str(_seconds_to_utc_midnight(self._clock()))})
            charged = True
        try:
            self._reserve_budget(principal, record)
        except ApiError:
            if charged:
                self.store.refund_daily_quota(principal.tenant)
            raise
        return charged

    # -- daily budget per tenant (runtime.jobs.spend) ------------------------------------------------------
    def expected_job_usd(self) -> float:
        """What one job is expected to cost: the average job time at the fleet's price."""
        return round(self.options.average_job_seconds * (self.options.hourly_usd or 0.0) / 3600.0, 6)

    def _reserve_budget(self, principal: Principal, record: dict[str, Any]) -> None:
        """Reserve the job's expected cost in its tenant's budget for today, or refuse it (429) with the budget
        and the spend; the record keeps what was reserved, for the worker that makes it final."""
        budget = self.options.budget_usd_per_day
        if budget is None:
            return
        spend = TenantSpend(self.store.table_name, self.store.client)
        day, expected = utc_day(self._clock()), self.expected_job_usd()
        if not spend.reserve(principal.tenant, day, expected, budget):
            used = spend.read(principal.tenant, day)
            raise ApiError(429, "budget-exceeded", "Too Many Requests",
                           f"this job (expected {expected:.6f} USD) would exceed the daily budget of {budget:g} USD: "
                           f"{used['usd']:.6f} USD spent today and {used['committed'] - used['usd']:.6f} USD "
                           "reserved by jobs not finished yet",
                           headers={"Retry-After": str(_seconds_to_utc_midnight(self._clock()))},
                           extra={"budget_usd": budget, "spend_usd": round(used["usd"], 6),
                                  "committed_usd": round(used["committed"], 6), "expected_usd": expected})
        record.update(budget_day=day, budget_reserved_usd=expected)

    def _release_budget(self, principal: Principal, record: dict[str, Any]) -> None:
        if record.get("budget_reserved_usd") is None or self.options.budget_usd_per_day is None:
            return
        TenantSpend(self.store.table_name, self.store.client).release(
            principal.tenant, str(record["budget_day"]), float(record["budget_reserved_usd"]))

    def _charged(self, principal: Principal) -> int | None:
        """The daily quota that applies to ``principal`` (None: unlimited)."""
        return principal.quota_per_day or self.options.quota_per_day

    def _replayed(self, record: dict[str, Any], spec: dict[str, Any], principal: Principal,
                  idem_key: str | None) -> dict[str, Any]:
        """The job an Idempotency-Key names; sends its message only if it was never sent and nobody is on it."""
        if record["status"] != QUEUED or record.get("enqueued") is not False:
            return record
        if not self.store.claim_send(record["job_id"], SEND_LEASE_SECONDS):
            # The first request is still between its write and its send (IETF Idempotency-Key draft: 409).
            raise ApiError(409, "request-in-progress", "Conflict",
                           "a request with this Idempotency-Key is still being processed; retry shortly",
                           headers={"Retry-After": "1"}, extra={"job_id": record["job_id"]})
        # The request that created it died between the write and the send: send it now.
        try:
            self.producer.send(QueueMessage(job_id=record["job_id"], job=spec, enqueued_at=self._clock()))
        except QueueError:  # the queue is down: the claim runs out and the next replay sends it
            raise
        except Exception:  # no retry can send this job: undo it (its creator charged the quota, if there is one)
            self._undo(record, principal, idem_key, charged=self._charged(principal) is not None)
            raise
        self._mark_enqueued(record["job_id"])
        return record

    def _mark_enqueued(self, job_id: str) -> None:
        try:
            self.store.mark_enqueued(job_id)
        except StoreUnavailableError:  # the message is out; at worst a replay sends it once more
            log.warning("could not mark job %s as enqueued", job_id)

    def _wait_for(self, job_id: str, wait: float) -> dict[str, Any] | None:
        """Read the record until it is final or the wait runs out, paced by its expected end (sync_wait)."""
        deadline = time.monotonic() + wait
        record: dict[str, Any] | None = None
        delay: float | None = None
        while time.monotonic() < deadline:
            delay = self.pacer.next_delay(record, self._clock(), delay)
            if record is None:
                delay = self.options.poll_interval_seconds
            self._sleep(min(delay, max(0.0, deadline - time.monotonic())))
            record = self.store.get(job_id)
            if record is None or record["status"] in FINAL:
                if record is not None:
                    self.pacer.observe(record)
                break
        return record

    def _owned(self, principal: Principal, job_id: str) -> dict[str, Any]:
        record = self.store.get(job_id) if is_job_id(job_id) else None
        if record is not None and expired(record, self._clock()):  # issue 44: retention ran out, TTL not yet
            record = None
        if record is None or record.get("owner") != principal.tenant:
            raise ApiError(404, "job-not-found", "Not Found", f"no job {job_id[:40]!r}")
        return record

    def get_job(self, req: Request, job_id: str) -> Response:
        principal = self._principal(req)
        self._read_limit(principal)
        return Response(200, self._view(self._owned(principal, job_id), req))

    def list_jobs(self, req: Request) -> Response:
        """The caller's jobs, newest first: one page from the ``owner-by-created`` index (runtime.api.job_list)."""
        principal = self._principal(req)
        self._read_limit(principal)
        query: ListQuery = parse_list_query(req.query)
        records, after = self.store.list_owned(principal.tenant, query.limit, query.statuses, query.after,
                                               metadata=dict(query.metadata))  # issue 44: label filters
        jobs = [public_view(record, req.base_url, self.links) for record in records]
        cursor = encode_cursor(after) if after is not None else None
        return Response(200, {"jobs": jobs, "next_cursor": cursor})

    def cancel_job(self, req: Request, job_id: str) -> Response:
        principal = self._principal(req)
        self._rate_limit(principal)
        record = self._owned(principal, job_id)
        # Only a conditional write changes the job, so of racing cancels one makes the change. Its 'completed'
        # webhook comes from the table's stream, once per transition (runtime/functions/webhook_dispatch.py),
        # never from here.
        updated, changed = self.store.cancel(job_id)
        if changed:
            log.info("job %s: cancel %s", job_id, "applied" if updated["status"] == CANCELED else "requested")
        updated = updated or record
        return Response(200, self._view(updated, req))

    def delete_job(self, req: Request, job_id: str) -> Response:
        """Issue 44: a final job's outputs, inputs and prompt deleted, a tombstone kept (runtime/jobs/deletion.py).
        Another key's job: 404; a job not final: 409; deleted already: the same answer as the first time."""
        principal = self._principal(req)
        self._rate_limit(principal)
        record = self._owned(principal, job_id)
        if self.deleter is None:
            raise ApiError(404, "not-found", "Not Found", "this deployment does not delete jobs")
        try:
            tombstone = self.deleter.delete(record)
        except JobNotFinalError as exc:
            raise ApiError(409, "job-not-final", "Conflict", str(exc)) from None
        return Response(200, self._view(tombstone, req))

    def job_events(self, req: Request, job_id: str) -> Response:
        """The job's events after ``after``, long-polled up to ``wait`` s (runtime.api.job_events_feed)."""
        principal = self._principal(req)
        self._read_limit(principal)
        if self._feed is None:
            raise ApiError(404, "not-found", "Not Found", "this deployment keeps no job events")
        record = self._owned(principal, job_id)  # another key's job: 404 before anything about the query
        query = parse_events_query(req.query, record)
        return Response(200, self._feed.read(job_id, query, record))

    # --- operator routes (issue 43, item 5) ----------------------------------------------------------
    def fleet(self, req: Request) -> Response:
        principal = require_operator(self._principal(req))
        self._read_limit(principal)
        return Response(200, fleet_view(self.producer, self._clock()))

    # --- views ---------------------------------------------------------------------------------------
    def _view(self, record: Mapping[str, Any], req: Request) -> dict[str, Any]:
        view = public_view(record, req.base_url, self.links)
        if record["status"] == QUEUED:
            view["queue"] = self._queue_info(record)
        if record["status"] == RUNNING and self.events is not None:
            view["progress"] = self._progress(record["job_id"])
        return view

    def _progress(self, job_id: str) -> dict[str, Any] | None:
        """The running job's latest progress event (issue 38); None when none was written (or the log is down)."""
        try:
            return self.events.latest_progress(job_id) if self.events is not None else None
        except StoreUnavailableError:
            return None

    def _queue_info(self, record: Mapping[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {"waiting_seconds": round(max(0.0, self._clock() - float(record["created_at"])), 3)}
        try:
            depth = self.producer.approximate_depth()
        except QueueError:
            depth = None
        if depth is not None:
            info["queue_depth"] = depth.waiting
            info["in_progress"] = depth.in_flight
            if depth.in_flight:
                info["estimated_wait_seconds"] = round(depth.waiting * self.options.average_job_seconds
                                                       / depth.in_flight, 1)
        return info


# --- helpers -------------------------------------------------------------------------------------------
def _problem(exc: ApiError) -> Response:
    return Response(exc.status, exc.body(), dict(exc.headers), content_type="application/problem+json")


def _validation_error(exc: ValidationError) -> ApiError:
    errors = [p.as_dict() for p in exc.problems]
    if exc.malformed:
        return ApiError(400, "malformed-request", "Bad Request", str(exc), errors=errors)
    return ApiError(422, "validation-failed", "Unprocessable Content", f"{len(errors)} rule(s) broken: {exc}",
                    errors=errors)


def _seconds_to_utc_midnight(now: float) -> int:
    return max(1, int(86400 - (now % 86400)))


def error_for(exc: JobError) -> ApiError:
    """Map a jobs error to an API error (exposed for other entry points)."""
    if isinstance(exc, ValidationError):
        return _validation_error(exc)
    return ApiError(503, "unavailable", "Service Unavailable", str(exc), headers={"Retry-After": "2"})
