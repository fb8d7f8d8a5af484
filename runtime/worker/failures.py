"""What an attempt's exception means for its job: the one table that maps errors by cause.

=========================  =====================================  ===========================================
cause                      examples                               what happens
=========================  =====================================  ===========================================
permanent (input)          JobInputError, ModelNotFound,          job failed for good, message acknowledged,
                           MessageFormatError,                    no retry
                           OutputEncodingError (video encoder)
transient (counted)        BackendError, BackendUnavailable,      attempt error recorded and counted; retried
                           an interruption nobody asked for,      after ``retry_delay_seconds``; the last
                           ModelUnavailable (download failed),    attempt fails the job
                           any unexpected exception
infrastructure (not        AWSCallError (S3), StoreUnavailable,   job handed back (attempt not counted) after
counted)                   QueueError, OSError (disk),            a backoff; the agent stays up and slows
                           BackendBusy (its work never started)   its loop while the failures go on
=========================  =====================================  ===========================================

Nothing escapes the agent's loop: an exception not in the table is transient (and logged with its
traceback), so a new failure mode costs an attempt, never the process (invariant 5). Infrastructure
failures are bounded too: the queue's redrive (attempts + hand-back allowance) sends a job that keeps
meeting them to the DLQ, whose consumer makes it final.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from runtime.backends.base import (
    BackendBusy,
    BackendError,
    BackendUnavailable,
    JobInputError,
    JobInterrupted,
    OutputEncodingError,
)
from runtime.jobs.errors import StoreUnavailableError
from runtime.model_cache import ModelNotFound, ModelUnavailable
from runtime.queues.base import MessageFormatError, QueueError
from runtime.worker.aws import AWSCallError


class Cause(StrEnum):
    PERMANENT = "permanent"  # the job can never succeed as given: failed now
    TRANSIENT = "transient"  # counted attempt, retried
    INFRASTRUCTURE = "infrastructure"  # not counted: handed back after a backoff


@dataclass(frozen=True)
class Disposition:
    cause: Cause
    code: str  # stable short code for the record and metrics

    @property
    def counted(self) -> bool:
        return self.cause is not Cause.INFRASTRUCTURE


# Order matters: the first matching class wins (subclasses before their bases).
TABLE: tuple[tuple[type[BaseException], Disposition], ...] = (
    (JobInputError, Disposition(Cause.PERMANENT, "invalid-input")),
    (ModelNotFound, Disposition(Cause.PERMANENT, "invalid-input")),
    (MessageFormatError, Disposition(Cause.PERMANENT, "invalid-message")),
    (OutputEncodingError, Disposition(Cause.PERMANENT, "encode-failed")),
    (JobInterrupted, Disposition(Cause.TRANSIENT, "interrupted")),
    (BackendBusy, Disposition(Cause.INFRASTRUCTURE, "backend-busy")),
    (BackendUnavailable, Disposition(Cause.TRANSIENT, "backend-unavailable")),
    (BackendError, Disposition(Cause.TRANSIENT, "backend-error")),
    (ModelUnavailable, Disposition(Cause.TRANSIENT, "model-unavailable")),
    (AWSCallError, Disposition(Cause.INFRASTRUCTURE, "aws-unavailable")),
    (StoreUnavailableError, Disposition(Cause.INFRASTRUCTURE, "store-unavailable")),
    (QueueError, Disposition(Cause.INFRASTRUCTURE, "queue-unavailable")),
    (OSError, Disposition(Cause.INFRASTRUCTURE, "local-io")),
)
UNEXPECTED = Disposition(Cause.TRANSIENT, "unexpected-error")


def classify(exc: BaseException) -> Disposition:
    for kind, disposition in TABLE:
        if isinstance(exc, kind):
            return disposition
    return UNEXPECTED
