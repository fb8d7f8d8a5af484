"""Job deadlines (issue 44): a job not started ``deadline_seconds`` after its creation ends ``canceled`` with
``cancel_reason: "deadline"``; it never runs and is never charged (no attempt, so no ``attempt_costs``).

Fields this module owns on a ``job#`` item::

    deadline_at       epoch seconds: created_at + the job's deadline (kept for the view once the job starts)
    deadline_index    "queued" while the job has a deadline and was never started (sparse GSI
                      ``queued-by-deadline``, range key ``deadline_at``); removed by the first pick-up and by
                      every final write, so the index holds only jobs that may still expire
    cancel_reason     "deadline" on a job canceled by its deadline ("client" on a client's cancel)

Two places enforce it: the worker's claim (``start_attempt`` refuses a job whose ``deadline_index`` is set and
whose ``deadline_at`` passed, and makes it canceled) and the sweeper (``expired_queued`` queries the index,
``cancel_expired`` cancels each, fenced on the job still being queued with its index set). A job handed back
after its first start keeps no deadline: it started in time.
"""

from __future__ import annotations

from typing import Any

DEADLINE_INDEX = "queued-by-deadline"
DEADLINE_INDEX_KEY = "deadline_index"
DEADLINE_INDEX_VALUE = "queued"
DEADLINE_AT = "deadline_at"
CANCEL_REASON = "cancel_reason"
REASON_DEADLINE, REASON_CLIENT = "deadline", "client"
MIN_DEADLINE_SECONDS, MAX_DEADLINE_SECONDS = 1, 86_400
# start_attempt's extra condition: no deadline pending, or not passed yet (values: ``:now``)
DEADLINE_NOT_PASSED = f"(attribute_not_exists({DEADLINE_INDEX_KEY}) OR {DEADLINE_AT} > :now)"
DEADLINE_ERROR = {"code": "deadline", "message": "the job was not started before its deadline; it did not run "
                                                 "and is not charged"}


def deadline_fields(created_at: float, seconds: float | None) -> dict[str, Any]:
    """The record fields of a new job with a deadline of ``seconds`` (none: ``{}``)."""
    if seconds is None:
        return {}
    return {DEADLINE_AT: float(created_at) + float(seconds), DEADLINE_INDEX_KEY: DEADLINE_INDEX_VALUE}


def deadline_passed(record: dict[str, Any], now: float) -> bool:
    """The record still waits for its first start and its deadline is over."""
    return bool(record.get(DEADLINE_INDEX_KEY)) and record.get(DEADLINE_AT) is not None \
        and float(record[DEADLINE_AT]) <= now


def canceled_by_deadline_fields() -> dict[str, Any]:
    """What the write that cancels an expired job sets (besides status and times)."""
    return {CANCEL_REASON: REASON_DEADLINE, "error": dict(DEADLINE_ERROR)}
