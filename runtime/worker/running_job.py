"""One claimed attempt as the worker holds it, from the claim until it is settled."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.backends.base import JobContext
from runtime.jobs.attempts import Attempt
from runtime.queues.base import ReceivedJob
from runtime.worker.outcomes import StopReason
from runtime.worker.prefetch import Prepared

if TYPE_CHECKING:
    from runtime.worker.guard import LeaseGuard


@dataclass
class RunningJob:
    received: ReceivedJob
    ctx: JobContext
    attempt: Attempt
    started: float = field(default_factory=time.monotonic)  # when it went on the backend
    claimed: float = field(default_factory=time.monotonic)  # when start_attempt confirmed the lease
    reason: StopReason | None = None  # why the agent interrupted it
    uploaded_keys: list[str] = field(default_factory=list)
    picked: float = field(default_factory=time.monotonic)  # taken off the prefetch (stats: pick-up to settled)
    timings: dict[str, float] = field(default_factory=dict)
    prepared: Prepared | None = None
    guard: LeaseGuard | None = None  # from the claim until it is settled
    run_span: tuple[float, float] | None = None  # monotonic start and end of the backend call
    switched: bool = False  # the backend changed model for this job (model affinity metrics)
    cache_hit: bool | None = None  # the model was in the local cache (None: no cache used)
    cost: dict[str, Any] | None = None  # the attempt's cost entry, once its settling write carries it

    @property
    def job_id(self) -> str:
        return self.ctx.job_id

    def release_guard(self) -> None:
        """Stop renewing the message and the record's lease: the job is settled."""
        if self.guard is not None:
            self.guard.stop()
