"""Admission control at submit (issue 44): a job the fleet cannot start in time is refused at the door.

``POST /v1/jobs`` asks ``admission_verdict`` before anything is written (no record, no quota, no budget):
the job's expected wait is the quote's (``runtime.api.quotes.quote``: jobs ahead and running from the queue
and the job table, the model and shape's learnt run time), and the bound is the smaller of the job's
deadline (its own ``deadline_seconds`` or the stack's default) and the stack's ``admissionMaxWaitSeconds``.
An expected wait above the bound answers 429 ``overloaded`` with ``Retry-After`` (the seconds until the
queue should be short enough: the excess, at least 1) and the estimate in the problem document. A queue that
gives no depth (Kafka) gives no estimate: the job is admitted, and its deadline still holds at the claim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from runtime.api.problems import ApiError


@dataclass(frozen=True)
class Verdict:
    admitted: bool
    expected_s: float | None  # the quote's expected wait (None: no depth known)
    bound_s: float | None  # the smaller of the deadline and the stack bound (None: no bound)
    bound_source: str  # "deadline_seconds" | "admissionMaxWaitSeconds" | ""


def bound(deadline_s: float | None, stack_max_wait_s: float | None) -> tuple[float | None, str]:
    """The wait a job may be expected to take before it is refused, and which setting made it."""
    options = [(b, name) for b, name in ((deadline_s, "deadline_seconds"),
                                         (stack_max_wait_s, "admissionMaxWaitSeconds")) if b is not None]
    if not options:
        return None, ""
    return min(options)


def admission_verdict(quote_doc: dict[str, Any], deadline_s: float | None,
                      stack_max_wait_s: float | None) -> Verdict:
    """Admit a job unless the quote's expected wait exceeds its bound."""
    limit, source = bound(deadline_s, stack_max_wait_s)
    expected = (quote_doc.get("wait_seconds") or {}).get("expected")
    admitted = limit is None or expected is None or expected <= limit
    return Verdict(admitted, expected, limit, source)


def refuse(verdict: Verdict) -> ApiError:
    """The 429 of a job refused at the door: ``Retry-After`` and the estimate."""
    expected, limit = verdict.expected_s or 0.0, verdict.bound_s or 0.0
    retry = max(1, math.ceil(expected - limit))
    return ApiError(429, "overloaded", "Too Many Requests",
                    f"the fleet is expected to start this job in about {expected:.0f} s, over its bound of "
                    f"{limit:g} s ({verdict.bound_source}); nothing was created, retry after {retry} s",
                    headers={"Retry-After": str(retry)},
                    extra={"estimate": {"wait_seconds": round(expected, 3), "bound_seconds": limit,
                                        "bound": verdict.bound_source}})
