"""Model-affinity scheduling: one consumer over a queue per model group, preferring what is warm.

Why: with one shared queue every worker takes whatever comes next, so with several models each worker
reloads models constantly. Here the API puts a job on its model group's queue (SQS: one queue per
group; Kafka: one topic per group, see docs/fleet.md) and each worker reads them in its own order:

1. a group whose backlog has waited longer than ``max_wait_seconds`` (no starvation), oldest first;
2. the group of the model the backend has loaded (``note_loaded``, the agent's one hook);
3. groups with a model in the host-RAM tier, then on the local disk (``tiers``, from the model cache);
4. the other groups, the longest backlog first (ties broken by a per-worker rotation, so idle workers
   spread over cold groups instead of all rushing the same one).

A worker therefore switches models only when its warm groups have nothing waiting, or when another
group's backlog is overdue. A worker that holds a model also leaves another group's backlog alone
until it has waited ``switch_after_seconds`` (delay scheduling, as in Zaharia et al.'s "Delay
Scheduling" for data locality): most of the time a worker that holds that group's model frees up
within seconds and takes it without a load, where an idle worker would pay a disk load at once.
A worker with nothing loaded (just booted), or one that found nothing for ``idle_switch_seconds``
(13 s: its own model has gone quiet), takes anything at once. These idle workers are what keeps the
tail short at light load: with the bound at 60 s too few workers were free to take a young backlog of
another group, and its jobs waited for a busy worker (bench/bench_affinity.py: p95 wait 1.6x FIFO's;
at 13 s 1.0x, with switches still 6-8x fewer than FIFO's at loads 0.25 and 0.4).

Starvation is judged from a cheap backlog probe per group (SQS ``ApproximateNumberOfMessages``;
Kafka consumer lag; the in-memory fake's depth), sampled at most every ``probe_seconds``: a group is
overdue when its backlog has been non-empty and never shrank between two samples for
``max_wait_seconds``. Peeking at messages would be exact, but every SQS receive counts
towards the redrive limit, so a peek could push a job to the dead-letter queue.

The consumer keeps the ``JobQueueConsumer`` interface the agent uses, and ``receive`` may be called
ahead of time (prefetch while a job runs): the preference then follows the model the running job loaded.
``ack`` / ``release`` / ``extend`` go to the queue the job came from.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from runtime.queues.base import JobQueueConsumer, QueueError, ReceivedJob

log = logging.getLogger(__name__)

LOADED, RAM, DISK, COLD = 0, 1, 2, 3  # warmth tiers, warmest first
DEFAULT_GROUP = "default"


def tier_map(on_disk: Iterable[str], in_ram: Iterable[str]) -> dict[str, int]:
    """model id -> warmth tier from the model cache's disk entries and the RAM tier's keys."""
    tiers = dict.fromkeys(on_disk, DISK)
    tiers.update(dict.fromkeys(in_ram, RAM))
    return tiers


@dataclass(frozen=True)
class ModelGroups:
    """model id -> group name; models named in no group belong to ``default``."""

    groups: Mapping[str, tuple[str, ...]]
    default: str = DEFAULT_GROUP

    def group_of(self, model: str | None) -> str:
        for name, models in self.groups.items():
            if model in models:
                return name
        return self.default

    def names(self) -> list[str]:
        names = list(self.groups)
        return names if self.default in names else [*names, self.default]


@dataclass
class GroupQueue:
    """One group's queue: the consumer to read it and a cheap probe of how many messages wait."""

    group: str
    consumer: JobQueueConsumer
    backlog: Callable[[], int]


@dataclass
class _Probe:
    waiting: int = 0
    at: float | None = None  # when sampled
    since: float | None = None  # backlog non-empty and not shrinking since


@dataclass
class AffinityStats:
    switches: int = 0
    overdue_picks: int = 0
    picks: dict[str, int] = field(default_factory=dict)


class AffinityConsumer(JobQueueConsumer):
    """Reads several group queues in a per-worker preference order (module docstring)."""

    def __init__(self, queues: Sequence[GroupQueue], groups: ModelGroups, *, worker_id: str = "",
                 max_wait_seconds: float = 60.0, switch_after_seconds: float = 20.0,
                 idle_switch_seconds: float = 13.0, probe_seconds: float = 1.0,
                 poll_seconds: float = 1.0,
                 tiers: Callable[[], Mapping[str, int]] | None = None,
                 on_switch: Callable[[str | None, str | None], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not queues:
            raise ValueError("AffinityConsumer needs at least one group queue")
        if max_wait_seconds <= 0:
            raise ValueError(f"max_wait_seconds = {max_wait_seconds}: must be > 0")
        self.queues = {q.group: q for q in queues}
        self.groups = groups
        self.max_wait_seconds = max_wait_seconds
        self.switch_after_seconds = switch_after_seconds
        self.idle_switch_seconds = idle_switch_seconds
        self.probe_seconds = probe_seconds
        self.poll_seconds = poll_seconds
        self.tiers = tiers
        self.on_switch = on_switch
        self.clock = clock
        self.loaded: str | None = None
        self.idle_since: float | None = None  # receive found nothing since then (reset when a job starts)
        self.stats = AffinityStats()
        self._rotation = zlib.crc32(worker_id.encode()) if worker_id else 0
        self._probes = {name: _Probe() for name in self.queues}
        self._origin: dict[int, tuple[ReceivedJob, JobQueueConsumer]] = {}
        self._lock = threading.Lock()

    # -- the agent's hook --------------------------------------------------------------------------
    def note_loaded(self, model: str | None) -> None:
        """The backend holds ``model`` now (called when a job for it starts): prefer its group."""
        with self._lock:
            previous, self.loaded = self.loaded, model
            self.idle_since = None
        if model != previous and previous is not None:
            self.stats.switches += 1
            if self.on_switch is not None:
                self.on_switch(previous, model)

    # -- order -------------------------------------------------------------------------------------
    def _sample(self, name: str, now: float) -> _Probe:
        probe = self._probes[name]
        if probe.at is not None and now - probe.at < self.probe_seconds - 1e-9:  # float sums of the period
            return probe
        try:
            waiting = int(self.queues[name].backlog())
        except QueueError as exc:
            log.warning("backlog of group %s unknown: %s", name, exc)
            return probe
        if waiting <= 0:
            probe.since = None
        elif probe.since is None or waiting < probe.waiting:
            probe.since = now  # a new backlog, or someone is working it off: restart the clock
        probe.waiting, probe.at = max(0, waiting), now
        return probe

    def warmth(self) -> dict[str, int]:
        """group -> warmest tier of any of its models on this worker."""
        out = dict.fromkeys(self.queues, COLD)
        for model, tier in (self.tiers() if self.tiers else {}).items():
            group = self.groups.group_of(model)
            if group in out:
                out[group] = min(out[group], tier)
        if self.loaded is not None and self.groups.group_of(self.loaded) in out:
            out[self.groups.group_of(self.loaded)] = LOADED
        return out

    def preference(self) -> list[str]:
        """Group names in the order this worker reads them now (overdue ones first)."""
        now = self.clock()
        probes = {name: self._sample(name, now) for name in self.queues}
        warmth = self.warmth()
        names = list(self.queues)
        rank = {name: (i + self._rotation) % len(names) for i, name in enumerate(names)}
        overdue = sorted((n for n in names if self._age(n, now) >= self.max_wait_seconds),
                         key=lambda n: probes[n].since or 0.0)
        rest = sorted((n for n in names if n not in overdue),
                      key=lambda n: (warmth[n], -probes[n].waiting if warmth[n] == COLD else 0, rank[n]))
        idle_long = self.idle_since is not None and now - self.idle_since >= self.idle_switch_seconds
        if self.loaded is not None and not idle_long and rest and warmth[rest[0]] == LOADED:
            # delay scheduling: leave young backlogs of other models to the workers that hold them
            rest = [rest[0], *(n for n in rest[1:] if self._age(n, now) >= self.switch_after_seconds)]
        return overdue + rest

    def _age(self, name: str, now: float) -> float:
        """How long the group's backlog has waited without shrinking (0 when there is none)."""
        since = self._probes[name].since
        return 0.0 if since is None else now - since

    # -- JobQueueConsumer --------------------------------------------------------------------------
    def receive(self, max_messages: int = 1, wait_seconds: float = 20.0) -> Sequence[ReceivedJob]:
        """Long-poll the first choice for ``poll_seconds``; when it comes back empty, probe the other
        groups right then and receive only from one whose probe sees a backlog.

        Probing after the long poll (not before it) means a backlog that appeared during the poll is
        seen at the end of that poll, not one probe period later: the wait a job of another group
        sees on an idle worker is at most ``poll_seconds``. One receive per cycle as before; the
        probes are rate-limited by ``probe_seconds``."""
        deadline = time.monotonic() + max(0.0, wait_seconds)  # real time: the clock may be simulated
        while True:
            top = self.preference()[0]  # probes as sampled at the end of the last cycle
            poll = max(0.0, min(self.poll_seconds, deadline - time.monotonic()))
            got = self.queues[top].consumer.receive(max_messages, poll)
            if got:
                return self._remember(top, got, overdue=self._age(top, self.clock()) >= self.max_wait_seconds)
            got = self._receive_others(top, max_messages, poll)
            if got:
                return got
            if time.monotonic() >= deadline or self.poll_seconds <= 0:
                if self.idle_since is None:
                    self.idle_since = self.clock()
                return []

    def _receive_others(self, top: str, max_messages: int, poll: float) -> Sequence[ReceivedJob]:
        """Receive from the first group after ``top`` whose probe sees a backlog. Long-polled like the
        first choice (it answers as soon as a message is there): an SQS receive without a wait asks only
        some of the queue's servers and can miss the few messages a young backlog holds."""
        order = self.preference()  # samples the probes now: the end of the first choice's poll
        now = self.clock()
        for name in order:
            if name == top or not self._probes[name].waiting:
                continue
            got = self.queues[name].consumer.receive(max_messages, poll)
            if got:
                return self._remember(name, got, overdue=self._age(name, now) >= self.max_wait_seconds)
        return []

    def _remember(self, name: str, got: Sequence[ReceivedJob], *, overdue: bool) -> Sequence[ReceivedJob]:
        consumer = self.queues[name].consumer
        with self._lock:
            self.idle_since = None
            for job in got:
                self._origin[id(job)] = (job, consumer)
            self.stats.picks[name] = self.stats.picks.get(name, 0) + len(got)
            if overdue:
                self.stats.overdue_picks += len(got)
        return got

    def _consumer_of(self, job: ReceivedJob, forget: bool) -> JobQueueConsumer:
        with self._lock:
            entry = self._origin.pop(id(job), None) if forget else self._origin.get(id(job))
        if entry is None:
            raise QueueError(f"job {job.message.job_id} was not received through this consumer")
        return entry[1]

    def ack(self, job: ReceivedJob) -> None:
        self._consumer_of(job, forget=False).ack(job)
        self._consumer_of(job, forget=True)

    def release(self, job: ReceivedJob, delay_seconds: int = 0) -> None:
        self._consumer_of(job, forget=False).release(job, delay_seconds)
        self._consumer_of(job, forget=True)

    def extend(self, job: ReceivedJob, visibility_seconds: int) -> None:
        self._consumer_of(job, forget=False).extend(job, visibility_seconds)

    def dead_letter(self, job: ReceivedJob, reason: str) -> None:
        self._consumer_of(job, forget=False).dead_letter(job, reason)
        self._consumer_of(job, forget=True)

    def close(self) -> None:
        for queue in self.queues.values():
            queue.consumer.close()
