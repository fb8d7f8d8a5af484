"""The agent's loop for consumers that hold one message at a time (Kafka: offsets commit in order).

Receive, claim, run, settle, receive: the same claim (runtime.worker.claims) and execution path
(runtime.worker.execution) as the pipeline, with nothing held ahead and nothing settled on a lane.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from runtime.queues.base import JobQueueConsumer, QueueError
from runtime.worker.backend_supervisor import BackendSupervisor
from runtime.worker.backoff import InfraBackoff
from runtime.worker.claims import Claimer
from runtime.worker.execution import Executor
from runtime.worker.lifecycle import Lifecycle
from runtime.worker.messages import MessageActions
from runtime.worker.prefetch import Prepared
from runtime.worker.recorder import JobRecorder
from runtime.worker.running_job import RunningJob
from runtime.worker.stop_signal import StopSignal

log = logging.getLogger(__name__)

RECEIVE_RETRY_S = 2.0


class SerialLoop:
    def __init__(self, consumer: JobQueueConsumer, *, wait_seconds: float, claimer: Claimer, executor: Executor,
                 supervisor: BackendSupervisor, stop: StopSignal, backoff: InfraBackoff, lifecycle: Lifecycle,
                 recorder: JobRecorder, messages: MessageActions, tick: Callable[[], None]) -> None:
        self._consumer, self._wait_s = consumer, wait_seconds
        self._claimer, self._executor, self._supervisor = claimer, executor, supervisor
        self._stop, self._backoff, self._lifecycle = stop, backoff, lifecycle
        self._recorder, self._messages, self._tick = recorder, messages, tick

    def run(self, max_jobs: int | None, idle_exit_seconds: float | None) -> int:
        done, idle_since = 0, time.monotonic()
        while not self._stop.is_set() and (max_jobs is None or done < max_jobs):
            self._tick()
            self._supervisor.ensure_ready()
            t = time.monotonic()
            try:
                jobs = self._consumer.receive(1, self._wait_s)
            except QueueError as exc:
                log.error("receive failed: %s", exc)
                self._stop.wait(RECEIVE_RETRY_S)
                continue
            if not jobs:
                self._lifecycle.protect(False)
                self._recorder.emit_busy()
                if idle_exit_seconds is not None and time.monotonic() - idle_since > idle_exit_seconds:
                    break
                continue
            receive_ms = round((time.monotonic() - t) * 1000, 1)
            for received in jobs:
                if self._stop.is_set():
                    self._messages.release(received, 0, "stopping")
                    continue
                claimed = self._claimer.claim(received, Prepared(received, receive_ms=receive_ms))
                if isinstance(claimed, RunningJob):
                    self._executor.execute([claimed])
                self._backoff.pause_if_troubled()
                done += 1
            idle_since = time.monotonic()
        return done
