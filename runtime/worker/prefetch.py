"""The agent's prefetch: receive the next job while the current one runs, so the backend never waits on AWS.

A thread keeps up to ``capacity`` received messages ready; dynamic batching (runtime.worker.batching) takes
several compatible ones at once with ``take_matching``. For each it fetches the input images and makes the
model and the job's extra model files (LoRAs: runtime.worker.extra_models) local (model cache) ahead of
time. What it holds is only *received*: the job's attempt is not started in the record until the agent is
about to run it (runtime.worker.claims), so a prefetched job counts no attempt and shows "queued" to its
client.

Guarantees kept for held messages:

- heartbeats: every third of the visibility timeout each held message's visibility is renewed
  (``consumer.extend``), so a job held behind a long one is never delivered to a second worker;
- hand-back: ``close`` (stop, drain, spot notice) releases every held message with delay 0 at once, and a
  message that a receive in flight returns after that is released the moment it arrives;
- each message's spec is read here, once, into the typed ``JobSpec`` (runtime.worker.inputs.read_job) that
  the attempt and the backend use; a spec that breaks the API's rules fails its job for good at the claim
  (runtime.worker.job_runner), and nothing else is prepared for it;
- failures of the preparation (bad input URL, model not in the store) are kept and raised inside the
  attempt, so they are counted and settled exactly as without prefetch.

A consumer that cannot hold several messages (Kafka: offsets commit in order, one job per member) says so
with ``supports_prefetch = False``; the agent then runs serially.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.jobs.extra_models import WorkflowModels
from runtime.jobs.schema import JobSpec
from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob
from runtime.worker.extra_models import fetch_extra_models
from runtime.worker.inputs import read_job

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    """A received job and what was made ready for it before its attempt starts."""

    received: ReceivedJob
    job: JobSpec | None = None  # the message's spec, typed (None: it does not parse; ``input_error`` says why)
    received_at: float = field(default_factory=time.monotonic)
    receive_ms: float = 0.0
    inputs: dict[str, bytes] | None = None
    inputs_ms: float = 0.0
    input_error: Exception | None = None
    model_ms: float = 0.0
    model_hit: bool | None = None  # the model was local already when the job was received (None: unknown)
    next_beat: float = 0.0


class Prefetcher:
    def __init__(self, consumer: JobQueueConsumer, *, capacity: int, wait_seconds: float, visibility_seconds: float,
                 prepare_inputs: Callable[[JobSpec], dict[str, bytes]],
                 prepare_model: Callable[[str], Any] | None = None, budget: int | None = None,
                 read_job: Callable[[Mapping[str, Any]], JobSpec] = read_job,
                 workflow_models: WorkflowModels | None = None) -> None:
        self.consumer, self.capacity, self.wait_seconds = consumer, max(1, capacity), wait_seconds
        self.workflow_models = workflow_models  # comfyui-workflow loader files -> store ids (issue 41)
        self.visibility_seconds = visibility_seconds
        self.beat_seconds = max(0.5, visibility_seconds / 3)
        self.prepare_inputs, self.prepare_model = prepare_inputs, prepare_model
        self.read_job = read_job  # the one parse of each message's spec (runtime.worker.inputs.read_job)
        self.budget = budget  # messages left to receive (max_jobs of tests and benches); None: no limit
        self.receive_errors = 0
        self._held: deque[Prepared] = deque()
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prefetch", daemon=True)

    def start(self) -> Prefetcher:
        self._thread.start()
        return self

    # -- the agent's side -------------------------------------------------------------------------------
    def take(self, timeout: float) -> Prepared | None:
        """The oldest prepared job, waiting up to ``timeout`` for one; None when none came or closed."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._held and not self._closed.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)
            if self._closed.is_set() or not self._held:
                return None
            item = self._held.popleft()
            self._cond.notify_all()  # room for the next receive
            return item

    def take_matching(self, match: Callable[[Prepared], bool], limit: int, timeout: float) -> list[Prepared]:
        """Up to ``limit`` held jobs for which ``match`` is true, oldest first, waiting up to ``timeout`` for
        more to arrive (dynamic batching, runtime.worker.batching); the others keep their place."""
        deadline, found = time.monotonic() + timeout, []
        with self._cond:
            while len(found) < limit and not self._closed.is_set():
                for item in [i for i in self._held if match(i)][:limit - len(found)]:
                    self._held.remove(item)
                    found.append(item)
                self._cond.notify_all()  # room for the next receive
                left = deadline - time.monotonic()
                if len(found) >= limit or left <= 0:
                    break
                self._cond.wait(left)
        return found

    def push_front(self, item: Prepared) -> None:
        """Put a taken job back first in line (the claim-ahead lost the race to a free backend)."""
        with self._cond:
            if self._closed.is_set():
                self._hand_back(item.received)
                return
            self._held.appendleft(item)
            self._cond.notify_all()

    def held(self) -> int:
        with self._cond:
            return len(self._held)

    def close(self, join_seconds: float | None = None) -> int:
        """Stop receiving and hand every held message back at once; returns how many were handed back."""
        self._closed.set()
        with self._cond:
            items = list(self._held)
            self._held.clear()
            self._cond.notify_all()
        for item in items:
            self._hand_back(item.received)
        if join_seconds is not None and self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(join_seconds)
        return len(items)

    @property
    def closed(self) -> bool:
        return self._closed.is_set()

    # -- the thread -------------------------------------------------------------------------------------
    def _room(self) -> int:
        left = self.capacity - len(self._held)
        return left if self.budget is None else min(left, self.budget)

    def _run(self) -> None:
        while not self._closed.is_set():
            with self._cond:
                while self._room() <= 0 and not self._closed.is_set():
                    self._cond.wait(self._beat_due())
                    self._beat_held()
                    if self.budget == 0 and not self._held:
                        return  # everything the caller asked for was received and taken
                self._beat_held()
                room = self._room()
                # a held message's heartbeat must not wait for a long poll to return
                wait = min(self.wait_seconds, self._beat_due()) if self._held else self.wait_seconds
            if self._closed.is_set():
                return
            self._receive(room, wait)

    def _receive(self, room: int, wait: float) -> None:
        t = time.monotonic()
        try:
            jobs = list(self.consumer.receive(room, wait))
        except QueueError as exc:
            self.receive_errors += 1
            log.error("receive failed: %s", exc)
            self._closed.wait(2.0)
            return
        receive_ms = round((time.monotonic() - t) * 1000, 1)
        for received in jobs:
            if self._closed.is_set():
                self._hand_back(received)
                continue
            item = self._prepare(Prepared(received, receive_ms=receive_ms))
            with self._cond:
                if self._closed.is_set():
                    self._hand_back(received)
                    continue
                if self.budget is not None:
                    self.budget -= 1
                item.next_beat = time.monotonic() + self.beat_seconds
                self._held.append(item)
                self._cond.notify_all()

    def _prepare(self, item: Prepared) -> Prepared:
        t = time.monotonic()
        try:
            item.job = self.read_job(item.received.message.job)
            item.inputs = self.prepare_inputs(item.job)
        except Exception as exc:  # noqa: BLE001 - raised again inside the attempt, where it is settled
            item.input_error = exc
        item.inputs_ms = round((time.monotonic() - t) * 1000, 1)
        model = item.job.model if item.job is not None else None
        if self.prepare_model is not None and model:
            t = time.monotonic()
            try:
                item.model_hit = getattr(self.prepare_model(str(model)), "hit", None)
                if item.job is not None:
                    fetch_extra_models(self.prepare_model, item.job, self.workflow_models)  # LoRAs, workflow files
            except Exception as exc:  # noqa: BLE001 - the attempt loads it again and settles a failure
                log.info("prefetch of model %s failed (the job loads it itself): %s", model, exc)
            item.model_ms = round((time.monotonic() - t) * 1000, 1)
        return item

    def _beat_due(self) -> float:
        if not self._held:
            return self.beat_seconds
        return max(0.05, min(item.next_beat for item in self._held) - time.monotonic())

    def _beat_held(self) -> None:
        """Renew the visibility of held messages whose beat is due (called with the condition held)."""
        now = time.monotonic()
        for item in self._held:
            if now >= item.next_beat:
                item.next_beat = now + self.beat_seconds
                try:
                    self.consumer.extend(item.received, round(self.visibility_seconds))
                except QueueError as exc:
                    log.warning("heartbeat of prefetched %s failed: %s", item.received.message.job_id, exc)

    def _hand_back(self, received: ReceivedJob) -> None:
        try:
            self.consumer.release(received, 0)
            log.info("prefetched job %s handed back", received.message.job_id)
        except QueueError as exc:
            log.error("hand back of prefetched %s failed (visible again when its visibility runs out): %s",
                      received.message.job_id, exc)
