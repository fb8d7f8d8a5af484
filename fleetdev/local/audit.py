"""Submit jobs to the local API, wait for them, and count what happened to each one.

``Ledger`` is the client side of the demo and the drills: it submits with an ``Idempotency-Key`` per
job and retries transport errors, 5xx, 429 and 409 (a replay of a request still in flight) with backoff
under the same key (so a retried submit never creates a second job), polls with bounded loops, then
audits the jobs against the platform's own state (moto keeps it in memory, so it is queried, not
inferred)::

    submitted   jobs the API accepted (distinct job ids)
    succeeded / failed / canceled   final status in the job table
    lost        not final by the deadline, or no record at all
    duplicated  a final record whose results are not exactly one attempt's: an object it points at
                written more than once (the outputs bucket is versioned in local mode, so every write
                leaves a version), any version under the referenced attempt's prefix that the record does
                not point at or that was written after the final write (deleted since or not), a live
                output of another attempt written after the job became final, a record written final
                more than once (read from the job table's stream: succeeded overwritten by failed is a
                second final write even when both carry the same timestamps), a record changed after it
                became final, or a second job record for one submission (``extra_jobs``)
    missing     a succeeded record pointing at an object that is not live at the end (deleted, or never
                written): the outputs of a final record never change (invariant 2)
    orphans     live objects under a final job's ``outputs/<job>/`` that its record does not point at
                (compared by object key): a killed attempt's upload the orphan sweeper should have deleted
    late writes output versions of other (fenced-out) attempts written after the job became final,
                counted and reported even when their attempt deleted them since

S3 lists ``LastModified`` in whole seconds (moto as AWS), so "after the final write" means in a later
second than the final write (the stream record's creation time, the server's clock, else ``completed_at``): a
late write within the same second is seen only by the prefix rule.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from boto3.dynamodb.types import TypeDeserializer

from runtime.functions.output_orphans import referenced_keys
from runtime.jobs.output_links import output_key
from runtime.jobs.store import FINAL, SUCCEEDED, JobStore

log = logging.getLogger(__name__)

# 409 is only ever "the first request with this Idempotency-Key is still in flight; retry shortly".
_RETRY_STATUS = {409, 429, 500, 502, 503, 504}


@dataclass
class Report:
    submitted: int
    succeeded: int
    failed: int
    canceled: int
    lost: int
    duplicated: int
    extra_jobs: int
    dlq: int | None
    redelivered: int  # jobs with more than one attempt (expected after a kill or hand-back)
    problems: list[str] = field(default_factory=list)
    missing: int = 0  # succeeded records whose outputs are not all live at the end
    orphans: int = 0  # live objects of final jobs that no record points at
    late_writes: int = 0  # output versions of fenced-out attempts written after their job was final

    def line(self, title: str = "") -> str:
        head = f"{title}: " if title else ""
        return (f"{head}jobs submitted {self.submitted} / succeeded {self.succeeded} / failed {self.failed} / "
                f"duplicated {self.duplicated}  (lost {self.lost}, canceled {self.canceled}, redelivered "
                f"{self.redelivered}, extra job records {self.extra_jobs}, late writes {self.late_writes}, DLQ "
                f"{self.dlq}, outputs missing {self.missing}, orphaned outputs {self.orphans})")

    @property
    def clean(self) -> bool:
        return (self.lost == 0 and self.duplicated == 0 and self.extra_jobs == 0 and self.missing == 0
                and self.orphans == 0)


class Ledger:
    def __init__(self, api_url: str, api_key: str, s3: Any, dynamodb: Any, sqs: Any, resources: Any,
                 request_timeout: float = 35.0, streams: Any = None) -> None:
        """``streams``: a DynamoDB Streams client; without one, second final writes are reported unaudited."""
        self.http = httpx.Client(base_url=api_url, timeout=request_timeout,
                                 headers={"Authorization": f"Bearer {api_key}"})
        self.s3, self.dynamodb, self.sqs, self.resources = s3, dynamodb, sqs, resources
        self.streams = streams
        self.final_at: dict[str, float] = {}  # job id -> its first final write, by the table's stream (server time)
        self.submitted: dict[str, dict[str, Any]] = {}  # job id -> {"inputs", "submitted_at", "response"}

    def close(self) -> None:
        self.http.close()

    # -- submit and poll -------------------------------------------------------------------------------
    def submit(self, prompt: str = "a lighthouse at dusk", width: int = 512, height: int = 512, seed: int | None = None,
               wait: int | None = None, retry_for: float = 60.0, model: str = "sdxl-base-1.0",
               webhook: str | None = None, webhook_events: list[str] | None = None,
               idempotency_key: str | None = None, task: str = "txt2img",
               inputs: dict[str, Any] | None = None, **extra_inputs: Any) -> dict[str, Any]:
        """POST /v1/jobs (``Prefer: wait=N`` when ``wait``); returns the job view. Retries for ``retry_for`` s.
        ``idempotency_key`` defaults to a fresh one (a drill replaying a submission passes its own); ``task``,
        ``inputs`` and ``extra_inputs`` (steps, guidance, an img2img image, frames, fps ...) make other jobs."""
        inputs = {"prompt": prompt, "width": width, "height": height, **(inputs or {}), **extra_inputs}
        if seed is not None:
            inputs["seed"] = seed
        headers = {"Idempotency-Key": idempotency_key or uuid.uuid4().hex}
        if wait:
            headers["Prefer"] = f"wait={wait}"
        body: dict[str, Any] = {"model": model, "task": task, "inputs": inputs}
        if webhook:
            body["webhook"] = webhook
            if webhook_events:
                body["webhook_events_filter"] = webhook_events
        started = time.time()
        response = self._request("POST", "/v1/jobs", retry_for, json=body, headers=headers)
        view = response.json()
        if response.status_code not in (200, 202):
            raise RuntimeError(f"submit failed: HTTP {response.status_code}: {view}")
        self.submitted[view["id"]] = {"inputs": inputs, "submitted_at": started, "response": response.status_code,
                                      "answered_s": time.time() - started}
        return view

    def submit_batch(self, count: int, width: int = 512, height: int = 512, retry_for: float = 60.0) -> list[str]:
        return [self.submit(prompt=f"batch job {i}", width=width, height=height, seed=i, retry_for=retry_for)["id"]
                for i in range(count)]

    def get(self, job_id: str, retry_for: float = 30.0) -> dict[str, Any]:
        response = self._request("GET", f"/v1/jobs/{job_id}", retry_for)
        if response.status_code != 200:
            raise RuntimeError(f"GET job {job_id}: HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def wait_final(self, job_ids: list[str], timeout: float, interval: float = 0.25) -> dict[str, dict[str, Any]]:
        """Poll until every job is final or ``timeout`` passes; returns the latest view of each."""
        views: dict[str, dict[str, Any]] = {}
        pending = list(job_ids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            still = []
            for job_id in pending:
                try:
                    views[job_id] = self.get(job_id, retry_for=max(0.0, min(5.0, deadline - time.monotonic())))
                except (RuntimeError, httpx.HTTPError) as exc:
                    log.info("poll of %s failed (will retry): %s", job_id, exc)
                    still.append(job_id)
                    continue
                if views[job_id]["status"] not in FINAL:
                    still.append(job_id)
            pending = still
            if pending:
                time.sleep(interval)
        return views

    def _request(self, method: str, path: str, retry_for: float, **kwargs: Any) -> httpx.Response:
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                response = self.http.request(method, path, **kwargs)
                if response.status_code not in _RETRY_STATUS:
                    return response
                reason = f"HTTP {response.status_code}"
            except httpx.TransportError as exc:
                response, reason = None, f"{type(exc).__name__}: {exc}"
            if time.monotonic() + delay > deadline:
                if response is not None:
                    return response
                raise httpx.TransportError(f"{method} {path}: no answer within {retry_for:.0f}s ({reason})")
            log.info("%s %s: %s; retrying in %.1fs", method, path, reason, delay)
            time.sleep(delay)
            delay = min(delay * 2, 3.0)

    # -- audit -----------------------------------------------------------------------------------------
    def report(self, job_ids: list[str] | None = None) -> Report:
        """Count outcomes from the job table, the outputs bucket's versions and the DLQ.

        ``job_ids`` defaults to every job this ledger submitted; pass all the jobs of the run, since
        ``extra_jobs`` counts the table's job records beyond them."""
        ids = list(job_ids if job_ids is not None else self.submitted)
        store = JobStore(self.resources.job_table, self.dynamodb)
        statuses: Counter[str] = Counter()
        duplicated, redelivered, late_writes, problems = 0, 0, 0, []
        final_writes = self.final_writes(problems)
        for job_id in ids:
            record = store.get(job_id)
            if record is None or record["status"] not in FINAL:
                statuses["lost"] += 1
                problems.append(f"{job_id}: {'no record' if record is None else record['status']}")
                continue
            statuses[record["status"]] += 1
            if int(record.get("attempts") or 0) > 1:
                redelivered += 1
            versions = self.output_versions(job_id)
            final_at = self.final_at.get(job_id)
            late = late_writes_of_others(versions, record, final_at)
            late_writes += len(late)
            if late:
                problems.append(f"{job_id}: {len(late)} write(s) of fenced-out attempts after the job was final "
                                f"(deleted since or not): {sorted(late)[:3]}")
            why = (self._duplicate(job_id, record, versions) or recorded_attempt_writes(versions, record, final_at)
                   or _second_final_write(final_writes, job_id))
            if why:
                duplicated += 1
                problems.append(f"{job_id}: {why}")
        extra = self._job_items() - len(set(ids))
        missing, orphans = self._output_audit(store, ids, problems)
        return Report(submitted=len(set(ids)), succeeded=statuses["succeeded"], failed=statuses["failed"],
                      canceled=statuses["canceled"], lost=statuses["lost"], duplicated=duplicated,
                      extra_jobs=max(0, extra), dlq=self.dlq_depth(), redelivered=redelivered, problems=problems,
                      late_writes=late_writes, missing=missing, orphans=orphans)

    # -- outputs at the end: referenced ones live, nothing else live (issue 28) ---------------------------
    def _output_audit(self, store: JobStore, ids: list[str], problems: list[str]) -> tuple[int, int]:
        """(succeeded records with a referenced object not live, live objects no final record references)."""
        missing = orphans = 0
        for job_id in ids:
            record = store.get(job_id)
            if record is None or record["status"] not in FINAL:
                continue
            live = set(self.live_output_keys(job_id))
            gone = self.missing_outputs(record, live)
            if gone:
                missing += 1
                problems.append(f"{job_id}: final record points at outputs that are not live: {gone[:3]}")
            stray = self.orphan_outputs(record, live)
            if stray:
                orphans += len(stray)
                problems.append(f"{job_id}: {len(stray)} live output(s) no record references: {stray[:3]}")
        return missing, orphans

    @staticmethod
    def missing_outputs(record: dict[str, Any], live: set[str]) -> list[str]:
        """Referenced keys of a succeeded record that are not live objects."""
        if record.get("status") != SUCCEEDED:
            return []
        return sorted(referenced_keys(record) - live)

    @staticmethod
    def orphan_outputs(record: dict[str, Any], live: set[str]) -> list[str]:
        """Live keys under a final job's folder that its record does not reference (by object key)."""
        return sorted(live - referenced_keys(record))

    def live_output_keys(self, job_id: str) -> list[str]:
        """Keys of the live (current, not deleted) objects under ``outputs/<job_id>/``."""
        keys: list[str] = []
        kwargs = {"Bucket": self.resources.outputs_bucket, "Prefix": f"outputs/{job_id}/"}
        for _ in range(100):  # bounded pagination
            page = self.s3.list_objects_v2(**kwargs)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                break
            kwargs["ContinuationToken"] = page["NextContinuationToken"]
        return keys

    def output_versions(self, job_id: str) -> list[dict[str, Any]]:
        versions: list[dict[str, Any]] = []
        kwargs = {"Bucket": self.resources.outputs_bucket, "Prefix": f"outputs/{job_id}/"}
        for _ in range(100):  # bounded pagination
            page = self.s3.list_object_versions(**kwargs)
            versions += page.get("Versions", [])
            if not page.get("IsTruncated"):
                break
            kwargs.update(KeyMarker=page["NextKeyMarker"], VersionIdMarker=page["NextVersionIdMarker"])
        return versions

    def _duplicate(self, job_id: str, record: dict[str, Any], versions: list[dict[str, Any]]) -> str | None:
        """Invariant 2 from the bucket's versions: the objects a final record points at were written once,
        before it became final, and never replaced; no other attempt left a live object after that."""
        completed = float(record.get("completed_at") or 0)
        if float(record.get("updated_at") or 0) > completed + 1e-6:
            return "the record changed after it became final"
        referenced = {k for o in record.get("outputs") or [] if (k := output_key(o))}
        per_key = Counter(v["Key"] for v in versions)
        replaced = {k: n for k, n in per_key.items() if k in referenced and n > 1}
        if replaced:
            return f"outputs behind the final record were written more than once: {replaced}"
        # A fenced-out attempt may have written under its own key before it learnt it lost; it must have
        # deleted that object since (its latest version is a delete marker, so no live version is latest).
        late = [v["Key"] for v in versions if v["LastModified"].timestamp() > completed + 1.0
                and (v["Key"] in referenced or v.get("IsLatest"))]
        if late:
            return f"{len(late)} output write(s) after the job was final: {sorted(set(late))[:3]}"
        missing = referenced - set(per_key)
        if missing:
            return f"record points at outputs that do not exist: {sorted(missing)[:3]}"
        return None

    def _job_items(self) -> int:
        count, kwargs = 0, {"TableName": self.resources.job_table, "FilterExpression": "begins_with(pk, :j)",
                            "ExpressionAttributeValues": {":j": {"S": "job#"}}, "Select": "COUNT"}
        for _ in range(1000):  # bounded pagination
            page = self.dynamodb.scan(**kwargs)
            count += int(page.get("Count", 0))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        return count

    def dlq_depth(self) -> int | None:
        """Messages in the jobs DLQ, visible and in flight (a consumer still working on one counts)."""
        dlq = getattr(self.resources, "dlq_url", None)
        if not dlq:
            return None
        attrs = self.sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=[
            "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        return sum(int(attrs.get(name, 0)) for name in
                   ("ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"))

    # -- second final writes, from the job table's stream (NEW_AND_OLD_IMAGES) -------------------------------
    def final_writes(self, problems: list[str]) -> Counter[str] | None:
        """job id -> writes that made its record final or changed a final record's outcome; None (and a
        problem) when the table's stream cannot be read."""
        if self.streams is None:
            return None
        try:
            records = _stream_records(self.dynamodb, self.streams, self.resources.job_table)
        except Exception as exc:  # noqa: BLE001 - reported: an audit that cannot see the stream says so
            problems.append(f"the job table's stream could not be read, second final writes unaudited: {exc}")
            return None
        counts: Counter[str] = Counter()
        for rec in records:
            data = rec.get("dynamodb") or {}
            new, old = _plain_image(data.get("NewImage")), _plain_image(data.get("OldImage"))
            if _is_final_write(old, new):
                job_id = str(new.get("job_id") or "")
                counts[job_id] += 1
                made = data.get("ApproximateCreationDateTime")
                if made is not None and job_id not in self.final_at:
                    self.final_at[job_id] = made.timestamp() if hasattr(made, "timestamp") else float(made)
        return counts


_OUTCOME_FIELDS = ("status", "outputs", "error", "completed_at")
_DESERIALIZE = TypeDeserializer()


def _plain_image(image: dict[str, Any] | None) -> dict[str, Any]:
    if not image:
        return {}
    return {k: _DESERIALIZE.deserialize(v) for k, v in image.items()}


def _is_final_write(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """A write that made the record final, or that changed the outcome of a record already final."""
    if new.get("status") not in FINAL:
        return False
    if old.get("status") not in FINAL:
        return True
    return any(old.get(k) != new.get(k) for k in _OUTCOME_FIELDS)


def _stream_records(dynamodb: Any, streams: Any, table: str, max_pages: int = 10_000) -> list[dict[str, Any]]:
    """Every record of the table's stream, from the trim horizon (bounded: ``max_pages`` reads per shard)."""
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    out: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = streams.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        for _ in range(max_pages):
            page = streams.get_records(ShardIterator=it, Limit=1000)
            out += page["Records"]
            it = page.get("NextShardIterator")
            if not page["Records"] or not it:
                break
    return out


def _second_final_write(final_writes: Counter[str] | None, job_id: str) -> str | None:
    if final_writes is None or final_writes[job_id] <= 1:
        return None
    return f"the record was written final {final_writes[job_id]} times (the table's stream)"


def _final_time(record: dict[str, Any], final_at: float | None) -> float:
    """When the job became final, by the local AWS's clock. ``completed_at`` is the worker's reading of AWS's
    clock (runtime.aws_clock: within about a second), while S3's ``LastModified`` is the server's own: the
    stream record's creation time is the server's time of the final write, so the two compare exactly."""
    return final_at if final_at is not None else float(record.get("completed_at") or 0)


def _referenced_prefix(record: dict[str, Any]) -> set[str]:
    """``outputs/<job>/<lease>/`` of the attempt whose outputs the final record points at."""
    keys = {k for o in record.get("outputs") or [] if (k := output_key(o))}
    return {k.rsplit("/", 1)[0] + "/" for k in keys if "/" in k}


def recorded_attempt_writes(versions: list[dict[str, Any]], record: dict[str, Any],
                            final_at: float | None = None) -> str | None:
    """The attempt the record points at wrote exactly what it points at, before its final write: any other
    version under its prefix (another key, deleted since or not) or one written later breaks invariant 2.
    ``final_at``: the final write's time by the table (its stream record); else the record's ``completed_at``."""
    prefixes = _referenced_prefix(record)
    referenced = {k for o in record.get("outputs") or [] if (k := output_key(o))}
    completed = _final_time(record, final_at)
    mine = [v for v in versions if any(v["Key"].startswith(p) for p in prefixes)]
    after = sorted({v["Key"] for v in mine if v["LastModified"].timestamp() > completed})
    if after:
        return f"{len(after)} object(s) under the recorded attempt's prefix written after the final write: {after[:3]}"
    extra = sorted({v["Key"] for v in mine} - referenced)
    if extra:
        return f"the recorded attempt wrote objects the record does not point at: {extra[:3]}"
    return None


def late_writes_of_others(versions: list[dict[str, Any]], record: dict[str, Any],
                          final_at: float | None = None) -> list[str]:
    """Keys of other attempts' versions written after the job became final, whether deleted since or not."""
    prefixes = _referenced_prefix(record)
    completed = _final_time(record, final_at)
    return [v["Key"] for v in versions if v["LastModified"].timestamp() > completed
            and not any(v["Key"].startswith(p) for p in prefixes)]
