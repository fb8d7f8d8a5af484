"""The planted bugs ``make mutants`` runs (tools/mutants.py): one line of invariant code each, and the tests that
must catch it. ``group`` is the invariant the mutant breaks; ``issue-33`` mutants are the bugs a first mutation
run found uncaught (issue 33), each kept here so the gap cannot reopen. Add a mutant with every invariant fix.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    name: str
    group: str  # leases | idempotency | ack-order | auth | size-limits | failure-table | lambda | cache | audit | tests
    path: str  # file, relative to the repository root
    scope: str  # Class.method, function, or module-level name: where ``find`` must occur exactly once
    find: str
    replace: str
    tests: tuple[str, ...]  # pytest targets that must fail with the mutant
    why: str  # the bug, in words


U = "tests/unit/"
I = "tests/integration/"  # noqa: E741 - a path prefix, read beside U
AUTH_TESTS = (U + "test_api_key_secret.py", I + "test_api_keys.py")
SETTLE_TESTS = (U + "test_settlement_rules.py",)
ATTEMPT_TESTS = (U + "test_job_attempts.py",)
STORE_TESTS = (U + "test_job_store.py",)

MUTANTS: tuple[Mutant, ...] = (
    # -- auth ---------------------------------------------------------------------------------------------------
    Mutant("auth-secret-not-compared", "auth", "runtime/api/auth.py", "_verified",
           " or not hmac.compare_digest(record.sha256, hash_key(presented))", "", AUTH_TESTS,
           "a real key id with any secret and a valid tag authenticates (issue 33, finding 1)"),
    Mutant("auth-disabled-ignored", "auth", "runtime/api/auth.py", "_verified",
           "record is None or record.disabled or", "record is None or", AUTH_TESTS,
           "a disabled (revoked) key still authenticates"),
    Mutant("auth-tag-not-checked", "auth", "runtime/api/auth.py", "authenticate",
           "if parsed is None or not (parsed.tag_ok or (not parsed.tagged and keys.accept_untagged)):",
           "if parsed is None:", AUTH_TESTS,
           "made-up and untagged keys reach the key store (a flood costs SSM calls; first-format keys everywhere)"),
    Mutant("auth-tag-always-ok", "auth", "runtime/api/key_format.py", "parse",
           "ok = hmac.compare_digest(m.group(3), key_tag(m.group(1), tag_secret))", "ok = True", AUTH_TESTS,
           "any 8-character tag passes the offline check"),
    Mutant("auth-failure-limit-bypassed", "auth", "runtime/api/auth.py", "authenticate",
           "if wait > 0:", "if False:", AUTH_TESTS,
           "a source over its failed-authentication budget still gets key-store lookups"),
    Mutant("auth-operator-scope-ignored", "auth", "runtime/api/fleet.py", "require_operator",
           "if principal.scope != OPERATOR_SCOPE:", "if False:",
           (U + "test_fleet_view.py", I + "test_api_key_tenancy.py"),
           "a tenant key reads the operator route GET /v1/fleet (issue 43, item 5)"),
    Mutant("auth-jobs-owned-by-key-not-tenant", "auth", "runtime/api/app.py", "ApiApp._owned",
           'record.get("owner") != principal.tenant', 'record.get("owner") != principal.id',
           (I + "test_api_key_tenancy.py",),
           "a rotated key cannot see its tenant's jobs, so a rotation is an outage (issue 43, item 3)"),
    Mutant("auth-webhook-signed-with-one-secret", "auth", "runtime/functions/webhooks.py", "sign",
           "for key in parse_secrets(secret)]", "for key in parse_secrets(secret)[:1]]",
           (U + "test_webhook_secret_rotation.py",),
           "mid-rotation deliveries carry only the new secret's signature: receivers on the old one break (issue 43)"),
    # -- ack order ----------------------------------------------------------------------------------------------
    Mutant("ack-before-final-write", "ack-order", "runtime/worker/settlement.py", "Settlement._record_success",
           "written = self._store.mark_succeeded(", "self._messages.ack(job.received)\n        "
           "written = self._store.mark_succeeded(", SETTLE_TESTS,
           "the message is acknowledged before the final record is written (issue 33, finding 2)"),
    Mutant("ack-before-failed-write", "ack-order", "runtime/worker/settlement.py", "Settlement._give_up",
           "written = self._store.mark_failed(", "self._messages.ack(job.received)\n        "
           "written = self._store.mark_failed(", SETTLE_TESTS,
           "a permanent failure acknowledges the message before the failed record is written"),
    Mutant("ack-before-cancel-write", "ack-order", "runtime/worker/settlement.py", "Settlement._interrupted",
           "self._store.mark_canceled(ctx.job_id, lease=lease,",
           "self._messages.ack(job.received)\n            self._store.mark_canceled(ctx.job_id, lease=lease,",
           SETTLE_TESTS, "a cancel acknowledges the message before the canceled record is written"),
    Mutant("ack-instead-of-dead-letter", "ack-order", "runtime/worker/settlement.py", "Settlement._give_up",
           "self._messages.dead_letter(job.received, message)", "self._messages.ack(job.received)", SETTLE_TESTS,
           "the last attempt's message is acknowledged instead of dead-lettered"),
    Mutant("fenced-out-acks-a-running-job", "ack-order", "runtime/worker/settlement.py", "Settlement._fenced_out",
           'if record is not None and record.get("status") in FINAL:', "if record is not None:", SETTLE_TESTS,
           "an attempt that lost its lease acknowledges the message the new owner is working on"),
    # -- leases and fencing -------------------------------------------------------------------------------------
    Mutant("finish-accepts-a-stale-lease", "leases", "runtime/jobs/attempts.py", "AttemptTransitions.finish",
           'condition += " AND lease = :lease"', 'condition += " AND lease >= :lease"', ATTEMPT_TESTS,
           "a worker that lost its lease can still make the record final"),
    Mutant("renew-ignores-the-lease", "leases", "runtime/jobs/attempts.py", "AttemptTransitions.renew_lease",
           'condition="lease = :lease AND #s = :running"', 'condition="lease >= :lease AND #s = :running"',
           ATTEMPT_TESTS, "a stale attempt's heartbeat keeps renewing another attempt's lease"),
    Mutant("attempt-limit-off-by-one", "leases", "runtime/jobs/attempts.py", "AttemptTransitions.start_attempt",
           "OR attempts < :max)", "OR attempts <= :max)", ATTEMPT_TESTS,
           "a job gets one attempt more than the stack's limit"),
    Mutant("stop-reason-ignores-the-lease", "leases", "runtime/worker/guard.py", "stop_reason",
           'int(record.get("lease") or 0) != lease or ', "", (U + "test_worker_parts.py",),
           "an attempt whose record names another lease keeps running (and writes)"),
    Mutant("checkpoint-never-reads", "leases", "runtime/worker/checkpoint.py", "Checkpoint.__call__",
           "if job.reason is None and time.monotonic() - job.claimed >= fresh_s:", "if False:",
           (U + "test_worker_parts.py",), "the check before the upload never reads the record"),
    # -- idempotency --------------------------------------------------------------------------------------------
    Mutant("idempotency-conflict-ignored", "idempotency", "runtime/jobs/store.py", "JobStore.find_idempotent",
           'if (idem.get("fingerprint") or "") != (fingerprint or ""):', "if False:", STORE_TESTS,
           "a key reused with another body replays the first job instead of 422"),
    Mutant("idempotency-replay-conflict-ignored", "idempotency", "runtime/jobs/store.py", "JobStore._replay",
           'if (idem.get("fingerprint") or "") != (fingerprint or ""):', "if False:", STORE_TESTS,
           "a racing request with another body under the same key is answered with the first job"),
    Mutant("idempotency-key-overwritten", "idempotency", "runtime/jobs/store.py", "JobStore.create",
           '"attribute_not_exists(pk) OR expires_at < :now"', '"attribute_not_exists(pk) OR expires_at > :now"',
           STORE_TESTS, "a live Idempotency-Key is overwritten: a replay creates a second job"),
    Mutant("idempotency-key-not-per-owner", "idempotency", "runtime/jobs/store.py", "idempotency_pk",
           'f"idem#{owner}#{hashlib.sha256(key.encode()).hexdigest()}"',
           'f"idem#{hashlib.sha256(key.encode()).hexdigest()}"', STORE_TESTS,
           "two API keys sharing an Idempotency-Key see each other's jobs"),
    Mutant("fingerprint-unsorted", "idempotency", "runtime/jobs/schema.py", "canonical_json",
           "sort_keys=True", "sort_keys=False", (U + "test_job_schema.py", U + "test_idempotency_fingerprint.py"),
           "the same body with keys in another order is an idempotency conflict"),
    # -- size limits --------------------------------------------------------------------------------------------
    Mutant("raw-body-limit-times-four", "size-limits", "runtime/api/app.py", "ApiApp.create_job",
           "if len(req.body) > MAX_BODY_BYTES:", "if len(req.body) > MAX_BODY_BYTES * 4:",
           (U + "test_api_body_limit.py",), "a body over 256,000 bytes gets 400 from the parser, not 413 (finding 7)"),
    Mutant("parser-limit-removed", "size-limits", "runtime/jobs/schema.py", "parse_json_body",
           "if len(raw) > MAX_BODY_BYTES:", "if False:", (U + "test_api_body_limit.py",),
           "the JSON parser decodes any size it is handed"),
    Mutant("spec-limit-removed", "size-limits", "runtime/jobs/schema.py", "validate_job",
           "if len(canonical_json(spec)) > MAX_BODY_BYTES:", "if False:", (U + "test_api_body_limit.py",),
           "a normalized job over the limit (defaults added) is accepted"),
    Mutant("queue-message-limit-times-four", "size-limits", "runtime/api/app.py", "ApiApp._check_message_size",
           "if size > limit:", "if size > limit * 4:", (I + "test_api_hardening.py",),
           "a job whose queue message would not fit SQS is accepted and then fails to send"),
    Mutant("input-image-cap-removed", "size-limits", "runtime/worker/inputs.py", "ImageFetcher.fetch",
           "if len(data) > MAX_IMAGE_BYTES:", "if False:", (U + "test_input_fetch.py",),
           "an input image of any size is read into memory"),
    # -- the failure table --------------------------------------------------------------------------------------
    Mutant("store-unavailable-counted", "failure-table", "runtime/worker/failures.py", "TABLE",
           '(StoreUnavailableError, Disposition(Cause.INFRASTRUCTURE, "store-unavailable"))',
           '(StoreUnavailableError, Disposition(Cause.TRANSIENT, "store-unavailable"))', SETTLE_TESTS,
           "a DynamoDB outage costs the job an attempt (issue 33, finding 4)"),
    Mutant("aws-call-error-counted", "failure-table", "runtime/worker/failures.py", "TABLE",
           '(AWSCallError, Disposition(Cause.INFRASTRUCTURE, "aws-unavailable"))',
           '(AWSCallError, Disposition(Cause.TRANSIENT, "aws-unavailable"))', SETTLE_TESTS,
           "an S3 outage costs the job an attempt (issue 33, finding 4)"),
    Mutant("queue-error-counted", "failure-table", "runtime/worker/failures.py", "TABLE",
           '(QueueError, Disposition(Cause.INFRASTRUCTURE, "queue-unavailable"))',
           '(QueueError, Disposition(Cause.TRANSIENT, "queue-unavailable"))', SETTLE_TESTS,
           "a queue outage costs the job an attempt"),
    Mutant("disk-error-counted", "failure-table", "runtime/worker/failures.py", "TABLE",
           '(OSError, Disposition(Cause.INFRASTRUCTURE, "local-io"))',
           '(OSError, Disposition(Cause.TRANSIENT, "local-io"))', SETTLE_TESTS,
           "a full disk costs the job an attempt"),
    # -- input fetch ----------------------------------------------------------------------------------------------
    Mutant("input-fetch-follows-redirects", "size-limits", "runtime/worker/inputs.py", "ImageFetcher.__init__",
           "follow_redirects=False", "follow_redirects=True", (U + "test_input_fetch.py",),
           "an input URL that redirects to 169.254.169.254 is followed (issue 33, finding 3)"),
    # -- the reconciler's Lambda entry points -----------------------------------------------------------------------
    Mutant("dead-letter-failures-dropped", "lambda", "runtime/functions/reconciler.py", "dead_letter_handler",
           'return {"batchItemFailures": failures, "outcomes": outcomes}', 'return {"outcomes": outcomes}',
           (I + "test_reconciler_entry_points.py",),
           "a dead letter that could not be reconciled is deleted by SQS (issue 33, finding 5)"),
    Mutant("dead-letter-failure-not-reported", "lambda", "runtime/functions/reconciler.py", "dead_letter_handler",
           'failures.append({"itemIdentifier": record["messageId"]})', "pass",
           (I + "test_reconciler_entry_points.py",), "a failed record is logged and dropped"),
    Mutant("sweeper-max-attempts-ignored", "lambda", "runtime/functions/reconciler.py", "sweep_handler",
           'int(os.environ.get("GENAI_MAX_ATTEMPTS", "3"))', "3", (I + "test_reconciler_entry_points.py",),
           "the sweeper ignores the stack's attempt limit"),
    # -- LRU recency ------------------------------------------------------------------------------------------------
    Mutant("disk-cache-hit-not-refreshed", "cache", "runtime/model_cache/cache.py", "ModelCache.ensure",
           "self._touch(marker)", "pass", (U + "test_cache_recency.py",),
           "a cache hit leaves the entry's LRU clock alone: a hot model is evicted first (issue 33, finding 6)"),
    Mutant("ram-tier-hit-not-refreshed", "cache", "runtime/model_cache/ram_tier.py", "HostRamTier.get_or_load",
           "entry.used_at = self.clock()", "pass", (U + "test_cache_recency.py",),
           "a RAM-tier hit through get_or_load leaves the entry's LRU clock alone"),
    # -- the chaos audit ----------------------------------------------------------------------------------------------
    Mutant("audit-final-to-final-ignored", "audit", "fleetdev/local/audit.py", "_is_final_write",
           "return any(old.get(k) != new.get(k) for k in _OUTCOME_FIELDS)", "return False",
           (I + "test_chaos_audit.py",), "succeeded overwritten by failed passes the audit"),
    Mutant("audit-deleted-strays-ignored", "audit", "fleetdev/local/audit.py", "recorded_attempt_writes",
           'extra = sorted({v["Key"] for v in mine} - referenced)',
           'extra = sorted({v["Key"] for v in mine if v.get("IsLatest")} - referenced)', (I + "test_chaos_audit.py",),
           "an object written under the recorded attempt and deleted since passes the audit"),
    Mutant("audit-deleted-late-writes-ignored", "audit", "fleetdev/local/audit.py", "late_writes_of_others",
           'and not any(v["Key"].startswith(p) for p in prefixes)]',
           'and not any(v["Key"].startswith(p) for p in prefixes) and v.get("IsLatest")]', (I + "test_chaos_audit.py",),
           "a fenced-out attempt's late write that it deleted is not counted"),
    # -- local mode's input checks (issue 35): bad input fails before anything starts ------------------------------
    Mutant("local-backend-unchecked", "local-input", "fleetdev/local/platform.py", "LocalPlatform.__init__",
           "if self.options.backend not in BACKENDS:", "if False:",
           (U + "test_local_models.py::test_the_platform_refuses_bad_input_before_it_starts_anything",),
           "an unknown backend name gets past the orchestrator (and fails later, naming something else)"),
    Mutant("local-diffusers-layout-unchecked", "local-input", "fleetdev/local/models.py", "check",
           'problem = diffusers_layout_problem(path) if path.is_dir() else "it is a file"', "problem = None",
           (U + "test_local_models.py",), "a folder that is not a diffusers layout is uploaded and fails at the "
           "first job, after everything started"),
    Mutant("local-missing-component-ignored", "local-input", "fleetdev/local/models.py", "diffusers_layout_problem",
           "if missing:", "if False:",
           (U + "test_local_models.py::test_a_folder_that_is_not_a_diffusers_layout_is_refused_saying_what_was"
            "_expected",),
           "a model_index.json naming a component folder that is not there passes the check"),
    Mutant("local-hidden-files-uploaded", "local-input", "fleetdev/local/models.py", "upload_source",
           'if any(part.startswith(".") for part in rel.parts):', "if False:",
           (U + "test_local_models.py::test_hidden_files_of_a_downloaded_folder_stay_out_of_the_upload",),
           "a download's .cache/ goes into the upload, which the model store refuses (hidden path)"),
    # -- the tests themselves ---------------------------------------------------------------------------------------
    Mutant("launch-template-token-renamed", "tests", "tests/unit/test_inference_cluster.py", "LT",
           '"aws:ec2/launchTemplate:LaunchTemplate"', '"aws:ec2/launchTemplate:LaunchTemplateV2"',
           (U + "test_inference_cluster.py::test_launch_template_hardening",),
           "a loop over a type token nothing declares checks nothing (issue 33, finding 8)"),
    Mutant("alarm-token-renamed", "tests", "tests/unit/test_monitoring.py", "ALARM",
           '"aws:cloudwatch/metricAlarm:MetricAlarm"', '"aws:cloudwatch/metricAlarm:Alarm"',
           (U + "test_monitoring.py::test_alarm_queries_return_exactly_one_series",),
           "a loop over a type token nothing declares checks nothing (issue 33, finding 8)"),
    Mutant("kafka-drain-counts-deliveries", "tests", "tests/integration/test_kafka_consumer.py", "_all_handed_out",
           "return set().union(*seen.values()) >= ids", "return sum(map(len, seen.values())) >= len(ids)",
           (I + "test_kafka_consumer.py::test_the_drain_stops_on_distinct_jobs_not_on_deliveries",),
           "the drain stops on a redelivery before the last distinct job arrives (issue 33, finding 9)"),
    # -- deadlines, admission control, priority ceilings (issue 44) ----------------------------------------------
    Mutant("deadline-not-checked-at-claim", "deadlines", "runtime/jobs/attempts.py", "AttemptTransitions.start_attempt",
           'f"{base} AND {DEADLINE_NOT_PASSED} AND (attribute_not_exists(attempts)',
           'f"{base} AND (attribute_not_exists(attempts)',
           (U + "test_job_deadlines.py", I + "test_worker_deadlines.py"),
           "a job whose deadline passed in the queue still runs (and is charged)"),
    Mutant("deadline-index-kept-on-final", "deadlines", "runtime/jobs/attempts.py", "AttemptTransitions.finish",
           "RUNNING_INDEX_KEY, DEADLINE_INDEX_KEY,", "RUNNING_INDEX_KEY,",
           (U + "test_job_deadlines.py::test_every_final_write_takes_the_job_out_of_the_index",),
           "final jobs stay in the sparse queued-by-deadline index, which the sweeper then reads forever"),
    Mutant("admission-skipped", "deadlines", "runtime/api/app.py", "ApiApp._create",
           "self._admission(record, spec, principal)", "None", (U + "test_api_admission.py",),
           "a job expected to miss its deadline is accepted (and written) instead of answered 429"),
    Mutant("priority-ceiling-ignored", "auth", "runtime/api/app.py", "ApiApp.create_job",
           "self._check_priority(spec, principal)", "None", (U + "test_api_priorities.py",),
           "a key sends high-priority jobs above its max_priority"),
)
