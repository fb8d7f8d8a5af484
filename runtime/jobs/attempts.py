"""Attempts and leases on a job record: counting, fencing and reconciliation (invariants 1-3).

Why here and not in the queue: SQS counts receives (hand-backs included, crashed receives too) and
Kafka counts nothing, so the record is the only place where "how many times did this job really
run" and "who owns it now" can be decided once, by a conditional write.

Fields this module owns on a ``job#`` item::

    attempts          counted attempts (a hand-back or an infrastructure failure gives its count back)
    lease             fencing token: +1 at every pick-up, never reused; outputs go under it
    lease_expires_at  epoch seconds; renewed by the worker's heartbeat while status is running
    running_index     "running" while a lease is held (sparse GSI ``running-by-lease``), removed otherwise
    handbacks         pick-ups that ended with the job handed back (drain, stop, infrastructure), or whose
                      worker died before or after its backend run (see "run markers")
    run_pending       lease of an attempt claimed (ahead) whose backend run has not begun yet
    run_finished      lease of an attempt whose backend run finished (only its settle was left)
    run_began_at      epoch seconds of the latest ``mark_run_began`` (a claimed-ahead attempt's run begins
                      after its claim, ``last_started_at``; the write lags the run by the marker's latency)
    attempt_costs     one entry per settled attempt (runtime.jobs.cost), appended by the write that settles it
                      (``cost=`` of release_attempt, fail_attempt and finish)

Run markers: a pipelined worker claims job N+1 before N's run ends and settles N while N+1 runs, so a
worker that N+1 kills (OOM, poison) dies holding N, N+1 and N+2. Only N+1 died running. With ``track_run``
the claim sets ``run_pending``; the worker removes it when the run begins (``mark_run_began``) and sets
``run_finished`` when the run ends (``mark_run_finished``), both off the backend's path, in order, fenced on
the lease. An attempt whose worker died while its record still says pending or finished was not what
killed it: the next pick-up (``start_attempt``) or the sweeper (``expire_lease``) gives its count back.
Settling removes the markers (a settled attempt is counted or given back by its own transition). The
markers lag the run by one conditional write: a job that kills its worker within that write's latency of
beginning is not counted; the queue's redrive (max attempts + hand-back allowance) still bounds it.

Transitions (conditions in brackets)::

    start_attempt   queued|running -> running, attempts+1, lease+1 [not final, no cancel, attempts < max]
                    running -> running, attempts+0, lease+1        [the previous attempt's worker died with
                                                                    its run pending or finished]
    mark_run_began  REMOVE run_pending, run_began_at = now         [lease = mine, running]
    mark_run_finished run_finished = lease                         [lease = mine, running]
    renew_lease     lease_expires_at = now + lease                 [lease = mine, running]
    release_attempt running -> queued, attempts-1 when not counted [lease = mine, running]
    fail_attempt    running -> queued, error appended              [lease = mine, running]
    finish          running -> succeeded|failed|canceled           [not final (, lease = mine)]; when the
                    condition fails on a record already final with this lease and exactly these fields,
                    the write was ours (applied, then an error and botocore's retry): True, as ``create``
    expire_lease    running -> queued or failed (sweeper)          [lease = seen, expired before cutoff]
    cancel_expired  queued -> canceled, cancel_reason "deadline"   [queued, deadline_index set, deadline_at
                                                                    <= now] (claim and sweeper; issue 44)

A job with a deadline (runtime.jobs.deadlines) is not started once it passed: ``start_attempt``'s condition
includes ``DEADLINE_NOT_PASSED`` and removes ``deadline_index`` (its first start ends the deadline); every
final write removes it too, so the sparse ``queued-by-deadline`` index holds only jobs still able to expire.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from runtime.jobs.cost import ATTEMPT_COSTS
from runtime.jobs.deadlines import (
    DEADLINE_AT,
    DEADLINE_INDEX_KEY,
    DEADLINE_INDEX_VALUE,
    DEADLINE_NOT_PASSED,
    canceled_by_deadline_fields,
    deadline_passed,
)
from runtime.jobs.errors import JobNotFoundError

log = logging.getLogger(__name__)

RUNNING_INDEX = "running-by-lease"
RUNNING_INDEX_KEY = "running_index"
RUNNING_INDEX_VALUE = "running"
LEASE_EXPIRES = "lease_expires_at"

# Pick-up outcomes
STARTED, FINAL_ALREADY, CANCELED_NOW, EXHAUSTED, MISSING = "started", "final", "canceled", "exhausted", "missing"
DEADLINE_PASSED = "deadline"  # not started before its deadline: canceled now (issue 44)
RUN_PENDING, RUN_FINISHED = "run_pending", "run_finished"
RUN_MARKERS = (RUN_PENDING, RUN_FINISHED)
# The attempt holding the record did not die running: its run had not begun, or had finished.
_DID_NOT_DIE_RUNNING = f"(#s = :running AND ({RUN_PENDING} = lease OR {RUN_FINISHED} = lease))"

_GIVE_BACK = "attempts = attempts - :one, handbacks = if_not_exists(handbacks, :zero) + :one"
# Condition and values of "the record is not final yet": a final record never changes (invariant 2).
NOT_FINAL = "#s IN (:queued, :running)"
NOT_FINAL_VALUES = {":queued": "queued", ":running": "running"}


def _with_cost(cost: Mapping[str, Any] | None, values: dict[str, Any], extra_set: str = "") -> str:
    """``extra_set`` plus the append of ``cost`` to ``attempt_costs`` (values gain ``:cost``/``:nocost``)."""
    if cost is None:
        return extra_set
    values[":cost"], values[":nocost"] = [dict(cost)], []
    append = f"{ATTEMPT_COSTS} = list_append(if_not_exists({ATTEMPT_COSTS}, :nocost), :cost)"
    return f"{extra_set}, {append}" if extra_set else append


def did_not_die_running(record: dict[str, Any]) -> bool:
    """What ``_DID_NOT_DIE_RUNNING`` says, on a record that was read (the sweeper's view)."""
    lease = record.get("lease")
    return record.get("status") == "running" and lease is not None and lease in (
        record.get(RUN_PENDING), record.get(RUN_FINISHED))


@dataclass(frozen=True)
class Attempt:
    """What ``start_attempt`` decided. ``lease`` is the fencing token every later write of this
    attempt carries; ``number`` the counted attempt (1-based)."""

    outcome: str
    record: dict[str, Any] | None
    number: int = 0
    lease: int = 0

    @property
    def started(self) -> bool:
        return self.outcome == STARTED


def attempt_history(record: dict[str, Any], limit: int = 5) -> str:
    """A short human summary of the attempt errors, for a final error message."""
    errors = record.get("attempt_errors") or []
    parts = [f"#{e.get('attempt')}: {e.get('code')}: {str(e.get('message', ''))[:200]}" for e in errors[-limit:]]
    head = f"{record.get('attempts', 0)} attempt(s), {record.get('handbacks', 0)} hand-back(s)"
    return head + ("; " + " | ".join(parts) if parts else "")


class RecordTable(Protocol):
    """What the transitions need of the job table (``JobStore`` is one): read a record, write one under a
    condition, list the records whose lease ran out."""

    def get(self, job_id: str) -> dict[str, Any] | None: ...

    def update(self, job_id: str, sets: Mapping[str, Any], condition: str, values: Mapping[str, Any] | None = None,
               extra_set: str = "", remove: Sequence[str] = ()) -> dict[str, Any] | None:
        """SET ``sets`` (and ``extra_set``), REMOVE ``remove`` when ``condition`` holds; the new record or None."""
        ...

    def lease_expired_ids(self, cutoff: float, limit: int) -> list[str]:
        """Ids of the running jobs whose lease ran out before ``cutoff`` (the sparse ``running-by-lease`` index)."""
        ...


class AttemptTransitions:
    """The attempt and lease transitions of the table above, each one conditional write on ``table``.

    ``JobStore`` makes one over itself (``store.attempts``); ``clock`` gives epoch seconds."""

    def __init__(self, table: RecordTable, clock: Callable[[], float]):
        self.table, self.clock = table, clock

    def start_attempt(self, job_id: str, worker_id: str, max_attempts: int, lease_seconds: float,
                      track_run: bool = False) -> Attempt:
        """Count one attempt and take the lease, or say why not (and make the record final if it must be).

        With ``track_run`` the attempt is pending until ``mark_run_began``. A previous attempt whose worker
        died outside its run (marker pending or finished) gets its count back here: one write either way,
        a second only on that retry."""
        now = self.clock()
        sets = {"status": "running", "worker_id": worker_id, "updated_at": now, "last_started_at": now,
                LEASE_EXPIRES: now + lease_seconds, RUNNING_INDEX_KEY: RUNNING_INDEX_VALUE}
        values = {**NOT_FINAL_VALUES, ":f": False, ":now": now, ":max": int(max_attempts), ":one": 1, ":zero": 0}
        base = f"{NOT_FINAL} AND (attribute_not_exists(cancel_requested) OR cancel_requested = :f)"
        lease_set = "started_at = if_not_exists(started_at, :now), lease = if_not_exists(lease, :zero) + :one"
        if track_run:
            lease_set += f", {RUN_PENDING} = if_not_exists(lease, :zero) + :one"
        record = self.table.update(
            job_id, sets, values=values,
            condition=f"{base} AND {DEADLINE_NOT_PASSED} AND (attribute_not_exists(attempts) OR attempts < :max) "
                      f"AND NOT {_DID_NOT_DIE_RUNNING}",
            extra_set=f"{lease_set}, attempts = if_not_exists(attempts, :zero) + :one", remove=(DEADLINE_INDEX_KEY,))
        if record is None:  # the attempt before died outside its run: it is not counted, this one is
            record = self.table.update(job_id, sets, values=values,
                                  condition=f"{base} AND attempts <= :max AND {_DID_NOT_DIE_RUNNING}",
                                  extra_set=f"{lease_set}, handbacks = if_not_exists(handbacks, :zero) + :one")
            if record is not None:
                log.info("job %s: lease %d's worker died outside its backend run; that attempt is not counted",
                         job_id, int(record["lease"]) - 1)
        if record is not None:
            return Attempt(STARTED, record, int(record["attempts"]), int(record["lease"]))
        return self._not_started(job_id, max_attempts)

    def _not_started(self, job_id: str, max_attempts: int) -> Attempt:
        current = self.table.get(job_id)
        if current is None:
            raise JobNotFoundError(job_id)
        if current["status"] in ("succeeded", "failed", "canceled"):
            return Attempt(FINAL_ALREADY, current)
        if current.get("cancel_requested"):
            self.finish(job_id, "canceled", {"cancel_requested": True})
            return Attempt(CANCELED_NOW, self.table.get(job_id))
        if deadline_passed(current, self.clock()):
            self.cancel_expired(job_id)
            return Attempt(DEADLINE_PASSED, self.table.get(job_id))
        message = f"attempt limit {max_attempts} reached ({attempt_history(current)})"
        self.finish(job_id, "failed", {"error": {"code": "attempts-exhausted", "message": message[:2000]}})
        log.warning("job %s: %s", job_id, message)
        return Attempt(EXHAUSTED, self.table.get(job_id))

    def mark_run_began(self, job_id: str, lease: int) -> bool:
        """The attempt's backend run began: from now on its worker's death counts against it."""
        return self.table.update(job_id, {"run_began_at": self.clock()}, remove=(RUN_PENDING,),
                                 condition="lease = :lease AND #s = :running",
                                 values={":lease": int(lease), ":running": "running"}) is not None

    def mark_run_finished(self, job_id: str, lease: int) -> bool:
        """The attempt's backend run finished (only its settle is left): its worker's death does not count."""
        return self.table.update(job_id, {RUN_FINISHED: int(lease)}, condition="lease = :lease AND #s = :running",
                            values={":lease": int(lease), ":running": "running"}) is not None

    def renew_lease(self, job_id: str, lease: int, lease_seconds: float) -> bool:
        """Heartbeat: False when the lease is no longer ours (taken over, final, handed back)."""
        now = self.clock()
        return self.table.update(job_id, {LEASE_EXPIRES: now + lease_seconds, "updated_at": now},
                            condition="lease = :lease AND #s = :running",
                            values={":lease": int(lease), ":running": "running"}) is not None

    def release_attempt(self, job_id: str, lease: int, counted: bool = False,
                        cost: Mapping[str, Any] | None = None) -> bool:
        """Hand the job back to the queue (drain, stop, infrastructure trouble); ``cost``: its attempt's entry."""
        now = self.clock()
        extra = "handbacks = if_not_exists(handbacks, :zero) + :one"
        if not counted:
            extra += ", attempts = attempts - :one"
        values = {":lease": int(lease), ":running": "running", ":zero": 0, ":one": 1}
        return self.table.update(job_id, {"status": "queued", "updated_at": now},
                            remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, *RUN_MARKERS),
                            condition="lease = :lease AND #s = :running",
                            values=values, extra_set=_with_cost(cost, values, extra)) is not None

    def fail_attempt(self, job_id: str, lease: int, attempt: int, error: dict[str, str],
                     cost: Mapping[str, Any] | None = None) -> bool:
        """A counted attempt failed and will be retried: note why and give the job back to the queue."""
        now = self.clock()
        entry = {"attempt": int(attempt), "at": now, **error}
        values = {":lease": int(lease), ":running": "running", ":e": [entry], ":empty": []}
        extra = _with_cost(cost, values, "attempt_errors = list_append(if_not_exists(attempt_errors, :empty), :e)")
        return self.table.update(job_id, {"status": "queued", "updated_at": now},
                            remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, *RUN_MARKERS),
                            condition="lease = :lease AND #s = :running",
                            values=values, extra_set=extra) is not None

    def finish(self, job_id: str, status: str, fields: dict[str, Any], lease: int | None = None,
               cost: Mapping[str, Any] | None = None) -> bool:
        """Make the job final; with ``lease`` only when that attempt still owns it. True when this call did.
        ``cost``: the settling attempt's entry, appended to ``attempt_costs`` by the same write."""
        now = self.clock()
        condition, values = NOT_FINAL, dict(NOT_FINAL_VALUES)
        if lease is not None:
            condition += " AND lease = :lease"
            values[":lease"] = int(lease)
        written = self.table.update(job_id, {"status": status, "completed_at": now, "updated_at": now, **fields},
                                   condition=condition, values=values, extra_set=_with_cost(cost, values),
                                   remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, DEADLINE_INDEX_KEY,
                                           *RUN_MARKERS)) is not None
        if written or lease is None:
            return written
        # DynamoDB may answer 500 after applying a write; botocore then retries it, and the retry's condition
        # fails on our own final record. That record is ours when it names our lease and holds what we wrote.
        return self._finished_by(job_id, status, fields, int(lease))

    def _finished_by(self, job_id: str, status: str, fields: dict[str, Any], lease: int) -> bool:
        """True when the record is final with ``status``, ``lease`` and exactly ``fields``: our write landed."""
        record = self.table.get(job_id)
        if record is None or record.get("status") != status or int(record.get("lease") or 0) != lease:
            return False
        ours = all(record.get(key) == value for key, value in fields.items())
        if ours:
            log.warning("job %s: final write of lease %d applied before an error; botocore's retry found it "
                        "made", job_id, lease)
        return ours

    def expire_lease(self, record: dict[str, Any], cutoff: float, max_attempts: int) -> str | None:
        """Sweeper: a lease that ran out before ``cutoff`` belongs to a dead worker. Give the job back to
        the queue (its message is redelivered) or, when no attempt is left, fail it. Fenced on the lease
        that was read, so a worker that picked it up meanwhile wins."""
        job_id, lease = record["job_id"], int(record.get("lease") or 0)
        worker = record.get("worker_id")
        now = self.clock()
        condition = f"lease = :lease AND #s = :running AND {LEASE_EXPIRES} < :cutoff"
        values = {":lease": lease, ":running": "running", ":cutoff": cutoff}
        if did_not_die_running(record):  # its worker died before or after the run: give the count back
            done = self.table.update(job_id, {"status": "queued", "updated_at": now},
                                remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, *RUN_MARKERS),
                                condition=f"{condition} AND ({RUN_PENDING} = :lease OR {RUN_FINISHED} = :lease)",
                                values={**values, ":one": 1, ":zero": 0}, extra_set=_GIVE_BACK)
            return "queued" if done is not None else None
        if int(record.get("attempts") or 0) >= max_attempts:
            message = f"worker {worker} stopped renewing its lease on the last attempt ({attempt_history(record)})"
            done = self.table.update(job_id, {"status": "failed", "completed_at": now, "updated_at": now,
                                         "error": {"code": "lease-expired", "message": message[:2000]}},
                                remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, *RUN_MARKERS), condition=condition,
                                values=values)
            return "failed" if done is not None else None
        entry = {"attempt": int(record.get("attempts") or 0), "at": now, "code": "lease-expired",
                 "message": f"worker {worker} stopped renewing its lease"}
        done = self.table.update(job_id, {"status": "queued", "updated_at": now},
                            remove=(LEASE_EXPIRES, RUNNING_INDEX_KEY, *RUN_MARKERS), condition=condition,
                            values={**values, ":e": [entry], ":empty": []},
                            extra_set="attempt_errors = list_append(if_not_exists(attempt_errors, :empty), :e)")
        return "queued" if done is not None else None

    def cancel_expired(self, job_id: str, now: float | None = None) -> bool:
        """Cancel a queued job whose deadline passed before it ever started (reason ``deadline``): it never runs
        and costs nothing. Fenced: only while it is queued, never started (index set) and past its deadline, so
        a worker that started it in time wins. True when this call made it final."""
        now = self.clock() if now is None else now
        return self.table.update(
            job_id, {"status": "canceled", "completed_at": now, "updated_at": now, **canceled_by_deadline_fields()},
            condition=f"#s = :queued AND {DEADLINE_INDEX_KEY} = :q AND {DEADLINE_AT} <= :now",
            values={":queued": "queued", ":q": DEADLINE_INDEX_VALUE, ":now": now},
            remove=(DEADLINE_INDEX_KEY,)) is not None

    def expired_leases(self, cutoff: float, limit: int = 100) -> list[dict[str, Any]]:
        """Records whose lease ran out before ``cutoff`` (sparse index query; only running jobs are in it)."""
        ids = self.table.lease_expired_ids(cutoff, limit)
        return [r for r in (self.table.get(i) for i in ids) if r is not None]
