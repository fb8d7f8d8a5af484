"""Errors of the jobs package. Foreign exceptions (botocore) are mapped at the boundary and chained.

```
JobError
 ├── ValidationError          the job spec breaks a rule; ``problems`` name field and rule (HTTP 400/422)
 ├── JobNotFoundError         no job with that id (HTTP 404)
 ├── IdempotencyConflictError same Idempotency-Key, different request body (HTTP 422)
 └── StoreUnavailableError    DynamoDB failed or throttled (HTTP 503; retry later)
```
"""

from __future__ import annotations

from dataclasses import dataclass


class JobError(Exception):
    """Base class of every error raised by ``runtime.jobs``."""


@dataclass(frozen=True)
class Problem:
    """One broken rule: ``field`` is a dotted path (``inputs.width``), ``rule`` a stable short code."""

    field: str
    rule: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "rule": self.rule, "message": self.message}


class ValidationError(JobError):
    """The request breaks one or more rules. ``malformed`` is true when it is not even JSON (400)."""

    def __init__(self, problems: list[Problem], malformed: bool = False):
        self.problems = problems
        self.malformed = malformed
        super().__init__("; ".join(f"{p.field}: {p.message} [{p.rule}]" for p in problems))


class JobNotFoundError(JobError):
    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"no job {job_id!r}")


class IdempotencyConflictError(JobError):
    """The Idempotency-Key was used before with a different request body."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        super().__init__(f"Idempotency-Key was already used for job {job_id} with a different request body")


class StoreUnavailableError(JobError):
    """The job table could not be read or written (throttling, network, permissions)."""
