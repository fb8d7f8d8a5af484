"""What happened to a job on this worker, and why the agent stopped one: the two enums every part speaks.

``Outcome`` is the end of one pick-up (stats, logs, tests); ``StopReason`` is why the agent interrupted an
attempt. Both are ``StrEnum``: they log and compare as their values ("succeeded", "drain").
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    SUCCEEDED = "succeeded"  # outputs uploaded, record final (fenced), message acknowledged
    CANCELED = "canceled"  # a cancel request stopped it; record canceled
    FAILED = "failed"  # failed for good (input error, or out of attempts)
    RETRYING = "retrying"  # a counted attempt failed; the message comes back after the retry delay
    HANDED_BACK = "handed-back"  # drain or stop: attempt given back uncounted, message visible at once
    LOST_LEASE = "lost-lease"  # another attempt owns the job (or it became final): outputs discarded
    DEFERRED = "deferred"  # infrastructure trouble: handed back uncounted after a backoff
    UNSETTLED = "unsettled"  # settling itself failed: the lease runs out and the job is retried
    SKIPPED = "skipped"  # not run: final already, canceled while queued, or out of attempts
    ORPHANED = "orphaned"  # the message names a job with no record: dropped
    SETTLING = "settling"  # handed to the settle lane; its own outcome is recorded when it is done

    @property
    def troubled(self) -> bool:
        """AWS or the disk is in trouble: the loop pauses before the next job."""
        return self in (Outcome.DEFERRED, Outcome.UNSETTLED)


class StopReason(StrEnum):
    CANCEL = "cancel"  # the client asked
    DRAIN = "drain"  # a termination notice: hand the job back for another worker
    STOP = "stop"  # SIGTERM or the end of the loop: hand the job back
    LOST_LEASE = "lost-lease"  # the record no longer names this attempt

    @property
    def hands_back(self) -> bool:
        """The attempt goes back uncounted and the whole job is redone elsewhere."""
        return self in (StopReason.DRAIN, StopReason.STOP)

    @property
    def overrides(self) -> bool:
        """Wins over an earlier reason: a cancel or a lost lease decides how the attempt settles."""
        return self in (StopReason.CANCEL, StopReason.LOST_LEASE)
