"""DynamoDB job store: the one module that reads and writes job records (table design: docs/CONTRACTS.md).

Contract used by the API and the worker agent
---------------------------------------------
``JobStore(table_name, client)``; ``client`` is a boto3 DynamoDB *client* (endpoint swapped for moto or
local mode). Every method maps botocore failures to ``StoreUnavailableError`` (chained).

=====================================================  =================================================
``create(record, idempotency_key=None,                 write a new job (``new_record`` builds one). With a
fingerprint=None) -> (record, created)``               key: one transaction writes the job and
                                                       ``idem#<owner>#sha256(key)``; a replay with the same
                                                       fingerprint returns ``(existing, False)``, another
                                                       fingerprint raises ``IdempotencyConflictError``.
``get(job_id) -> record | None``                       strongly consistent read; ``require`` raises
                                                       ``JobNotFoundError`` instead of returning None.
``attempts.start_attempt(job_id, worker_id,          count an attempt and take the lease (fencing token)
max_attempts, lease_seconds) -> Attempt``              or say why not: final already, canceled now,
                                                       attempts exhausted (then failed here). Renewal,
                                                       hand-back and sweeping: ``store.attempts``, an
                                                       ``AttemptTransitions`` (runtime/jobs/attempts.py)
                                                       writing through ``update``.
``mark_succeeded(job_id, outputs, timings, lease)``    -> final unless already final; with ``lease`` only
``mark_failed(job_id, error, timings, lease)``         while that attempt still owns the job. True when
``mark_canceled(job_id, lease) -> bool``               this call made it final (recorded once).
``record_attempt_error(job_id, attempt, error)``       append {attempt, error, at} to ``attempt_errors``.
``find_idempotent(owner, key, fingerprint)             the job an Idempotency-Key already names (None:
-> record | None``                                     unused or expired); another fingerprint raises
                                                       ``IdempotencyConflictError``. Read before the quota.
``claim_send(job_id, lease_seconds) -> bool``          conditional write: True for the one caller that may
                                                       send a not-yet-enqueued job's message now (no live
                                                       ``send_lease_until`` lease held by another request).
``cancel(job_id) -> (record | None, changed)``         queued -> canceled at once; running -> sets
                                                       ``cancel_requested``; final -> unchanged record.
                                                       ``changed`` is True only for the call whose
                                                       conditional write made the change.
``request_cancel(job_id) -> record | None``            ``cancel`` without the ``changed`` flag.
``is_cancel_requested(job_id) -> bool``                the worker polls it between phases.
``list_owned(owner, limit, statuses=(), after=None)    the owner's jobs, newest first, from the
-> (records, next_after | None)``                      ``owner-by-created`` index (a Query, never a scan);
                                                       ``after`` / ``next_after`` = ``(created_at, job_id)``
                                                       of the last job of the previous page.
=====================================================  =================================================

Status transitions (final statuses never change)::

    queued ──> running ──> succeeded
      │          │  └────> failed
      │          └───────> canceled   (worker saw cancel_requested, or start_attempt found it set)
      └──────────────────> canceled   (request_cancel while queued)
      └──────────────────> failed     (e.g. the API could not enqueue it)
    running ──> queued                (hand-back, a failed attempt to retry, a lease the sweeper expired)

Record (a plain dict; numbers come back as int or float):
``job_id, status, model, task, spec`` (the normalized job spec, runtime.jobs.schema), ``owner`` (API key
id or IAM principal that created it), ``created_at, started_at, completed_at, updated_at`` (epoch
seconds, float; None until reached), ``attempts`` (int, counted attempts), ``lease`` (fencing token),
``worker_id``, ``outputs`` (list of
``{"url", "content_type"}``), ``timings`` (``queue_wait_ms, model_load_ms, inference_ms, upload_ms,
total_ms``), ``error`` (``{"code", "message"}`` or None), ``attempt_errors``, ``cancel_requested``
(bool), ``expires_at`` (TTL, epoch seconds).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from runtime.jobs.attempts import (
    LEASE_EXPIRES,
    NOT_FINAL,
    NOT_FINAL_VALUES,
    RUNNING_INDEX,
    RUNNING_INDEX_KEY,
    RUNNING_INDEX_VALUE,
    AttemptTransitions,
)
from runtime.jobs.errors import IdempotencyConflictError, JobNotFoundError, StoreUnavailableError
from runtime.jobs.ids import new_job_id
from runtime.jobs.items import deserialize, serialize, serialize_value

log = logging.getLogger(__name__)

QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED = "queued", "running", "succeeded", "failed", "canceled"
STATUSES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELED)
FINAL = frozenset({SUCCEEDED, FAILED, CANCELED})
JOB_TTL_SECONDS = 30 * 86400
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_ERROR_CHARS = 2000
# The index GET /v1/jobs reads: job items by owner, newest first. Only job items carry ``owner``, so
# idempotency and quota items stay out of it (a sparse index). It projects every attribute: a page of jobs
# is one Query, with no GetItem per job.
OWNER_INDEX = "owner-by-created"
OWNER_INDEX_KEY, OWNER_INDEX_SORT = "owner", "created_at"
# Query rounds one page may take when a status filter skips most items (each round reads up to a page).
LIST_MAX_ROUNDS = 8


def job_pk(job_id: str) -> str:
    return f"job#{job_id}"


def idempotency_pk(owner: str, key: str) -> str:
    return f"idem#{owner}#{hashlib.sha256(key.encode()).hexdigest()}"


def normalize_error(error: Any) -> dict[str, str]:
    """``"text"`` or ``{"code", "message"}`` or an exception -> ``{"code", "message"}`` (bounded)."""
    if isinstance(error, BaseException):
        error = {"code": type(error).__name__, "message": str(error)}
    if isinstance(error, Mapping):
        code, message = str(error.get("code") or "error"), str(error.get("message") or "")
    else:
        code, message = "error", str(error)
    return {"code": code[:100], "message": message[:MAX_ERROR_CHARS]}


def new_record(spec: Mapping[str, Any], owner: str, now: float | None = None, job_id: str | None = None,
               ttl_seconds: int = JOB_TTL_SECONDS) -> dict[str, Any]:
    """A fresh ``queued`` record for a normalized spec."""
    now = time.time() if now is None else now
    return {"job_id": job_id or new_job_id(now), "status": QUEUED, "model": spec["model"], "task": spec["task"],
            "spec": dict(spec), "owner": owner, "created_at": now, "updated_at": now, "started_at": None,
            "completed_at": None, "attempts": 0, "worker_id": None, "outputs": [], "timings": {}, "error": None,
            "attempt_errors": [], "cancel_requested": False, "enqueued": False,
            "expires_at": int(now + ttl_seconds)}


def _record_from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    record = deserialize(item)
    record.pop("pk", None)
    if isinstance(record.get("spec"), str):
        record["spec"] = json.loads(record["spec"])
    for key in ("started_at", "completed_at", "worker_id", "error"):
        record.setdefault(key, None)
    record.setdefault("outputs", [])
    record.setdefault("timings", {})
    record.setdefault("attempt_errors", [])
    record.setdefault("cancel_requested", False)
    record.setdefault("attempts", 0)
    return record


def _is_condition_failure(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException"



def _video_facts(video: Mapping[str, Any]) -> dict[str, Any]:
    """A video output's facts as the record keeps them (runtime.video.encode.EncodedVideo.info)."""
    return {k: (str(video[k]) if k == "format" else video[k]) for k in
            ("format", "frames", "fps", "duration_s", "width", "height", "bytes") if video.get(k) is not None}

class JobStore:
    """Job records in one DynamoDB table (see the module docstring for the contract)."""

    def __init__(self, table_name: str, client: Any, clock: Any = time.time):
        self.table_name = table_name
        self.client = client
        self._clock = clock
        self.attempts = AttemptTransitions(self, clock)  # attempts, leases, fencing: runtime/jobs/attempts.py

    # --- reads ---------------------------------------------------------------------------------------
    def get(self, job_id: str) -> dict[str, Any] | None:
        try:
            resp = self.client.get_item(TableName=self.table_name, Key={"pk": {"S": job_pk(job_id)}},
                                        ConsistentRead=True)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError(f"reading job {job_id} failed: {exc}") from exc
        item = resp.get("Item")
        return _record_from_item(item) if item else None

    def require(self, job_id: str) -> dict[str, Any]:
        record = self.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        return record

    def is_cancel_requested(self, job_id: str) -> bool:
        record = self.get(job_id)
        return bool(record and (record.get("cancel_requested") or record["status"] == CANCELED))

    # --- create --------------------------------------------------------------------------------------
    def create(self, record: Mapping[str, Any], idempotency_key: str | None = None,
               fingerprint: str | None = None) -> tuple[dict[str, Any], bool]:
        item = dict(record)
        item["pk"] = job_pk(record["job_id"])
        item["spec"] = json.dumps(record["spec"], separators=(",", ":"), sort_keys=True, allow_nan=False)
        put_job = {"TableName": self.table_name, "Item": serialize(item),
                   "ConditionExpression": "attribute_not_exists(pk)"}
        if idempotency_key is None:
            try:
                self.client.put_item(**put_job)
            except ClientError as exc:
                # Job ids are unique: a failed "not exists" check means an earlier attempt of this very call
                # succeeded and botocore retried it (e.g. after a read timeout). The job is ours.
                mine = self.get(record["job_id"]) if _is_condition_failure(exc) else None
                if mine is None:
                    raise StoreUnavailableError(f"creating job failed: {exc}") from exc
                return mine, True
            except BotoCoreError as exc:
                raise StoreUnavailableError(f"creating job failed: {exc}") from exc
            return dict(record), True
        now = self._clock()
        ipk = idempotency_pk(str(record.get("owner", "")), idempotency_key)
        idem = serialize({"pk": ipk, "job_id": record["job_id"], "fingerprint": fingerprint or "",
                          "created_at": now, "expires_at": int(now + IDEMPOTENCY_TTL_SECONDS)})
        put_idem = {"TableName": self.table_name, "Item": idem,
                    # An expired item may linger until DynamoDB's TTL sweeper deletes it: treat it as absent.
                    "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                    "ExpressionAttributeValues": {":now": {"N": str(int(now))}}}
        try:
            self.client.transact_write_items(TransactItems=[{"Put": put_job}, {"Put": put_idem}])
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise StoreUnavailableError(f"creating job failed: {exc}") from exc
            existing, _ = self._replay(ipk, fingerprint, exc)
            # Our own job id behind the key: botocore retried a transaction whose first attempt succeeded.
            return existing, existing["job_id"] == record["job_id"]
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"creating job failed: {exc}") from exc
        return dict(record), True

    def _replay(self, ipk: str, fingerprint: str | None, exc: ClientError) -> tuple[dict[str, Any], bool]:
        resp = self._call("get_item", TableName=self.table_name, Key={"pk": {"S": ipk}}, ConsistentRead=True)
        if "Item" not in resp:
            raise StoreUnavailableError(f"creating job failed (transaction canceled): {exc}") from exc
        idem = deserialize(resp["Item"])
        if (idem.get("fingerprint") or "") != (fingerprint or ""):
            raise IdempotencyConflictError(idem["job_id"]) from None
        existing = self.get(idem["job_id"])
        if existing is None:  # the job item expired before the key did
            raise StoreUnavailableError(f"idempotent replay found no job {idem['job_id']}") from exc
        return existing, False

    def find_idempotent(self, owner: str, idempotency_key: str, fingerprint: str | None) -> dict[str, Any] | None:
        """The job behind a live Idempotency-Key, or None; ``IdempotencyConflictError`` for another body."""
        resp = self._call("get_item", TableName=self.table_name,
                          Key={"pk": {"S": idempotency_pk(owner, idempotency_key)}}, ConsistentRead=True)
        if "Item" not in resp:
            return None
        idem = deserialize(resp["Item"])
        if float(idem.get("expires_at") or 0) < int(self._clock()):
            return None  # expired; create() overwrites it
        if (idem.get("fingerprint") or "") != (fingerprint or ""):
            raise IdempotencyConflictError(idem["job_id"])
        return self.get(idem["job_id"])

    def claim_send(self, job_id: str, lease_seconds: float) -> bool:
        """Claim the right to send a queued, not-yet-enqueued job's message for ``lease_seconds``.

        One conditional write decides among concurrent replays: the request that created the job holds
        the first lease (``send_lease_until`` in its record), so replays only send a job whose creator
        died (lease run out) without marking it ``enqueued``.
        """
        now = self._clock()
        done = self.update(job_id, {"send_lease_until": now + lease_seconds},
                            condition="#s = :queued AND enqueued = :f AND "
                                      "(attribute_not_exists(send_lease_until) OR send_lease_until < :now)",
                            values={":queued": QUEUED, ":f": False, ":now": now})
        return done is not None

    def mark_enqueued(self, job_id: str) -> None:
        """Note that the job's queue message was sent, so an idempotent replay need not send it again.

        Tracked for jobs created with an Idempotency-Key only (nothing else can replay a create); the
        ``enqueued`` attribute of other jobs stays false.
        """
        self.update(job_id, {"enqueued": True}, condition="attribute_exists(pk)")

    def abandon(self, record: Mapping[str, Any], idempotency_key: str | None = None) -> None:
        """Delete a job the API could not enqueue (and its idempotency item) so a retry starts fresh."""
        self._call("delete_item", TableName=self.table_name, Key={"pk": {"S": job_pk(record["job_id"])}})
        if idempotency_key is not None:
            ipk = idempotency_pk(str(record.get("owner", "")), idempotency_key)
            self._call("delete_item", TableName=self.table_name, Key={"pk": {"S": ipk}})

    # --- transitions ---------------------------------------------------------------------------------
    def update(self, job_id: str, sets: Mapping[str, Any], condition: str,
               values: Mapping[str, Any] | None = None, extra_set: str = "",
               remove: Sequence[str] = ()) -> dict[str, Any] | None:
        """SET ``sets`` when ``condition`` holds; the new record, or None when the condition failed."""
        names = {"#s": "status"} if "#s" in condition else {}
        exprs, attr_values = [], {k: serialize_value(v) for k, v in (values or {}).items()}
        for i, (key, value) in enumerate(sets.items()):
            names[f"#a{i}"] = key
            attr_values[f":a{i}"] = serialize_value(value)
            exprs.append(f"#a{i} = :a{i}")
        if extra_set:
            exprs.append(extra_set)
        expression = " ".join(part for part in ("SET " + ", ".join(exprs) if exprs else "",
                                                "REMOVE " + ", ".join(remove) if remove else "") if part)
        try:
            resp = self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": job_pk(job_id)}},
                UpdateExpression=expression, ConditionExpression=condition,
                ExpressionAttributeNames=names, ExpressionAttributeValues=attr_values, ReturnValues="ALL_NEW")
        except ClientError as exc:
            if _is_condition_failure(exc):
                return None
            raise StoreUnavailableError(f"updating job {job_id} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"updating job {job_id} failed: {exc}") from exc
        return _record_from_item(resp["Attributes"])

    def lease_expired_ids(self, cutoff: float, limit: int) -> list[str]:
        """Ids of the running jobs whose lease ran out before ``cutoff`` (the sparse ``running-by-lease`` index)."""
        resp = self._call("query", TableName=self.table_name, IndexName=RUNNING_INDEX,
                          KeyConditionExpression="running_index = :r AND lease_expires_at < :cutoff",
                          ExpressionAttributeValues={":r": {"S": RUNNING_INDEX_VALUE},
                                                     ":cutoff": {"N": repr(float(cutoff))}},
                          Limit=limit)
        return [item["pk"]["S"].split("#", 1)[1] for item in resp.get("Items", [])]

    def count_running(self, limit: int = 10_000) -> int:
        """How many jobs are running now (the sparse ``running-by-lease`` index, counted, at most ``limit``)."""
        total, start = 0, None
        while total < limit:
            page = {"TableName": self.table_name, "IndexName": RUNNING_INDEX, "Select": "COUNT",
                    "KeyConditionExpression": "running_index = :r",
                    "ExpressionAttributeValues": {":r": {"S": RUNNING_INDEX_VALUE}},
                    **({"ExclusiveStartKey": start} if start else {})}
            resp = self._call("query", **page)
            total += int(resp.get("Count", 0))
            start = resp.get("LastEvaluatedKey")
            if not start:
                break
        return total

    def list_owned(self, owner: str, limit: int, statuses: Sequence[str] = (),
                   after: tuple[float, str] | None = None) -> tuple[list[dict[str, Any]], tuple[float, str] | None]:
        """Up to ``limit`` of ``owner``'s jobs, newest first, optionally only those in ``statuses``.

        The status filter is applied by DynamoDB after the key condition (items it skips still cost reads),
        so a page may take several rounds; after ``LIST_MAX_ROUNDS`` it ends short with a cursor. The
        index is eventually consistent: a job created a moment ago may show up a moment later.
        """
        query: dict[str, Any] = {
            "TableName": self.table_name, "IndexName": OWNER_INDEX, "ScanIndexForward": False,
            "KeyConditionExpression": "#o = :o", "ExpressionAttributeNames": {"#o": OWNER_INDEX_KEY},
            "ExpressionAttributeValues": {":o": {"S": owner}}}
        if statuses:
            names = [f":s{i}" for i in range(len(statuses))]
            query["FilterExpression"] = f"#s IN ({', '.join(names)})"
            query["ExpressionAttributeNames"]["#s"] = "status"
            query["ExpressionAttributeValues"].update({n: {"S": v} for n, v in zip(names, statuses, strict=True)})
        start = None if after is None else {
            "pk": {"S": job_pk(after[1])}, OWNER_INDEX_KEY: {"S": owner},
            OWNER_INDEX_SORT: serialize_value(float(after[0]))}
        records: list[dict[str, Any]] = []
        for _ in range(LIST_MAX_ROUNDS):
            page = {**query, "Limit": limit - len(records), **({"ExclusiveStartKey": start} if start else {})}
            resp = self._call("query", **page)
            records.extend(_record_from_item(item) for item in resp.get("Items", []))
            start = resp.get("LastEvaluatedKey")
            if start is None or len(records) >= limit:
                break
        if start is None:
            return records, None
        last = deserialize(start)
        return records, (float(last[OWNER_INDEX_SORT]), str(last["pk"]).split("#", 1)[1])

    def mark_succeeded(self, job_id: str, outputs: Sequence[Mapping[str, Any]],
                       timings: Mapping[str, Any] | None = None, lease: int | None = None,
                       cost: Mapping[str, Any] | None = None) -> bool:
        outs = [{"key": str(o["key"]), "content_type": str(o.get("content_type") or "application/octet-stream"),
                 **({"generator": str(o["generator"])} if o.get("generator") else {}),
                 **({"video": _video_facts(o["video"])} if o.get("video") else {})}
                for o in outputs]
        return self.attempts.finish(job_id, SUCCEEDED, {"outputs": outs, "timings": dict(timings or {})}, lease=lease,
                                    cost=cost)

    def mark_failed(self, job_id: str, error: Any, timings: Mapping[str, Any] | None = None,
                    lease: int | None = None, cost: Mapping[str, Any] | None = None) -> bool:
        fields: dict[str, Any] = {"error": normalize_error(error)}
        if timings:
            fields["timings"] = dict(timings)
        return self.attempts.finish(job_id, FAILED, fields, lease=lease, cost=cost)

    def mark_canceled(self, job_id: str, lease: int | None = None, cost: Mapping[str, Any] | None = None) -> bool:
        return self.attempts.finish(job_id, CANCELED, {"cancel_requested": True}, lease=lease, cost=cost)

    def record_attempt_error(self, job_id: str, attempt: int, error: Any) -> None:
        now = self._clock()
        entry = {"attempt": int(attempt), "at": now, **normalize_error(error)}
        self.update(job_id, {"updated_at": now}, condition=NOT_FINAL,  # a final record never changes
                     values={**NOT_FINAL_VALUES, ":e": [entry], ":empty": []},
                     extra_set="attempt_errors = list_append(if_not_exists(attempt_errors, :empty), :e)")

    def request_cancel(self, job_id: str) -> dict[str, Any] | None:
        """Cancel now if queued, flag if running; None when there is no such job."""
        return self.cancel(job_id)[0]

    def cancel(self, job_id: str) -> tuple[dict[str, Any] | None, bool]:
        """``request_cancel`` that also says whether THIS call's conditional write made the change.

        Of many concurrent cancels of one queued job exactly one gets ``changed=True`` (the others find
        it final); a running job is flagged once (a second flag finds ``cancel_requested`` already set).
        """
        for _ in range(5):  # bounded: each retry means the status moved under us
            current = self.get(job_id)
            if current is None or current["status"] in FINAL:
                return current, False
            if current["status"] == RUNNING and current.get("cancel_requested"):
                return current, False
            now = self._clock()
            if current["status"] == QUEUED:
                done = self.update(job_id, {"status": CANCELED, "cancel_requested": True, "completed_at": now,
                                             "updated_at": now}, condition="#s = :queued",
                                    values={":queued": QUEUED})
            else:
                done = self.update(job_id, {"cancel_requested": True, "updated_at": now},
                                    condition="#s = :running AND (attribute_not_exists(cancel_requested) "
                                              "OR cancel_requested = :f)",
                                    values={":running": RUNNING, ":f": False})
            if done is not None:
                return done, True
        return self.get(job_id), False

    # --- quota ---------------------------------------------------------------------------------------
    def consume_daily_quota(self, owner: str, limit: int, now: float | None = None) -> bool:
        """Count one job against ``owner``'s quota for today (UTC); False when the quota is used up."""
        now = self._clock() if now is None else now
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        try:
            self.client.update_item(
                TableName=self.table_name, Key={"pk": {"S": f"quota#{owner}#{day}"}},
                UpdateExpression="ADD used :one SET expires_at = :exp",
                ConditionExpression="attribute_not_exists(used) OR used < :limit",
                ExpressionAttributeValues={":one": {"N": "1"}, ":limit": {"N": str(int(limit))},
                                           ":exp": {"N": str(int(now) + 2 * 86400)}})
        except ClientError as exc:
            if _is_condition_failure(exc):
                return False
            raise StoreUnavailableError(f"quota update failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"quota update failed: {exc}") from exc
        return True

    def refund_daily_quota(self, owner: str, now: float | None = None) -> None:
        """Give back one unit (an idempotent replay created no job)."""
        now = self._clock() if now is None else now
        day = time.strftime("%Y-%m-%d", time.gmtime(now))
        self._call("update_item", TableName=self.table_name, Key={"pk": {"S": f"quota#{owner}#{day}"}},
                   UpdateExpression="ADD used :minus", ConditionExpression="used > :zero",
                   ExpressionAttributeValues={":minus": {"N": "-1"}, ":zero": {"N": "0"}})

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return getattr(self.client, method)(**kwargs)
        except ClientError as exc:
            if _is_condition_failure(exc):
                raise StoreUnavailableError(f"job already exists ({method})") from exc
            raise StoreUnavailableError(f"{method} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError(f"{method} failed: {exc}") from exc


def create_table(client: Any, table_name: str) -> None:
    """Create a table shaped like components/job_store.py declares it (tests and local mode only)."""
    client.create_table(
        TableName=table_name, BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"},
                              {"AttributeName": RUNNING_INDEX_KEY, "AttributeType": "S"},
                              {"AttributeName": LEASE_EXPIRES, "AttributeType": "N"},
                              {"AttributeName": OWNER_INDEX_KEY, "AttributeType": "S"},
                              {"AttributeName": OWNER_INDEX_SORT, "AttributeType": "N"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[{"IndexName": RUNNING_INDEX, "Projection": {"ProjectionType": "KEYS_ONLY"},
                                 "KeySchema": [{"AttributeName": RUNNING_INDEX_KEY, "KeyType": "HASH"},
                                               {"AttributeName": LEASE_EXPIRES, "KeyType": "RANGE"}]},
                                {"IndexName": OWNER_INDEX, "Projection": {"ProjectionType": "ALL"},
                                 "KeySchema": [{"AttributeName": OWNER_INDEX_KEY, "KeyType": "HASH"},
                                               {"AttributeName": OWNER_INDEX_SORT, "KeyType": "RANGE"}]}],
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"})
    try:
        client.update_time_to_live(TableName=table_name,
                                   TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"})
    except ClientError:  # TTL is a nicety in local mode; the real table declares it in Pulumi
        log.debug("could not enable TTL on %s", table_name)
