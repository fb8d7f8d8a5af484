"""Model-affinity consumer: warm groups first, overdue backlogs first of all, jobs settled on their own queue."""

from __future__ import annotations

import pytest

from runtime.queues.affinity import DISK, RAM, AffinityConsumer, GroupQueue, ModelGroups
from runtime.queues.base import QueueError, QueueMessage
from runtime.queues.memory import InMemoryQueue


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


GROUPS = ModelGroups({"sdxl": ("sdxl-base", "sdxl-turbo"), "sd15": ("sd15",), "flux": ("flux-dev",)})


def setup(max_wait: float = 60.0, tiers=None, worker_id: str = "w1", switch_after: float = 10.0):
    clock = Clock()
    queues = {name: InMemoryQueue(clock=clock) for name in GROUPS.names()}
    group_queues = [GroupQueue(n, q, lambda q=q: q.approximate_depth().waiting) for n, q in queues.items()]
    consumer = AffinityConsumer(group_queues, GROUPS, worker_id=worker_id, max_wait_seconds=max_wait,
                                switch_after_seconds=switch_after,
                                probe_seconds=0.0, poll_seconds=0.0, tiers=tiers, clock=clock)
    return clock, queues, consumer


def put(queues, model: str, job_id: str) -> None:
    queues[GROUPS.group_of(model)].send(QueueMessage(job_id, {"model": model}))


def take(consumer) -> str | None:
    got = consumer.receive(1, 0)
    if not got:
        return None
    consumer.ack(got[0])
    return got[0].message.job_id


def test_groups_map_models_and_unknown_models_go_to_default():
    assert GROUPS.group_of("sdxl-turbo") == "sdxl"
    assert GROUPS.group_of("something-else") == "default" and GROUPS.group_of(None) == "default"
    assert GROUPS.names() == ["sdxl", "sd15", "flux", "default"]


def test_loaded_model_group_is_served_before_older_jobs_of_other_groups():
    clock, queues, consumer = setup()
    put(queues, "sd15", "old-sd15")
    clock.now += 5
    put(queues, "sdxl-base", "x1")
    put(queues, "sdxl-turbo", "x2")
    consumer.note_loaded("sdxl-base")
    assert [take(consumer), take(consumer)] == ["x1", "x2"]
    assert take(consumer) is None  # the sd15 job is young: a worker holding sd15 may take it without a load
    clock.now += 10.0
    assert take(consumer) == "old-sd15"  # nothing warm waits and it waited switch_after_seconds: switch
    assert take(consumer) is None
    assert consumer.stats.switches == 0  # switching is counted when the agent loads the next model
    consumer.note_loaded("sd15")
    assert consumer.stats.switches == 1


def test_a_worker_with_nothing_loaded_takes_anything_at_once():
    _clock, queues, consumer = setup(switch_after=1000.0)
    put(queues, "sd15", "s")
    assert take(consumer) == "s"


def test_delay_scheduling_leaves_young_backlogs_to_workers_that_hold_the_model():
    clock, queues, holder = setup(worker_id="holder")
    other = AffinityConsumer([GroupQueue(n, q, lambda q=q: q.approximate_depth().waiting) for n, q in queues.items()],
                             GROUPS, worker_id="other", switch_after_seconds=10.0, probe_seconds=0.0,
                             poll_seconds=0.0, clock=clock)
    holder.note_loaded("sd15")
    other.note_loaded("flux-dev")
    put(queues, "sd15", "s1")
    assert take(other) is None  # idle, but s1 is young and not its model
    clock.now += 3.0
    assert take(holder) == "s1"  # the holder frees up and runs it without a switch
    put(queues, "sd15", "s2")
    take(other)
    clock.now += 10.0
    assert take(other) == "s2"  # nobody came for it within switch_after_seconds: switch


def test_a_worker_idle_for_idle_switch_seconds_takes_young_backlogs_at_once():
    clock, queues, consumer = setup(max_wait=60.0)
    consumer.note_loaded("sd15")
    assert take(consumer) is None  # idle from here
    clock.now += 12.0
    put(queues, "flux-dev", "f")
    assert take(consumer) is None  # young backlog, and idle for 12 s only
    clock.now += 1.0
    assert take(consumer) == "f"  # its own model has been quiet for idle_switch_seconds (13 s by default)
    consumer.note_loaded("flux-dev")
    assert consumer.idle_since is None


def test_a_backlog_that_appears_during_the_long_poll_is_taken_when_the_poll_ends():
    """The other groups are probed after the first choice's poll, not before it: a job that arrived
    meanwhile is taken at the end of that poll instead of one probe period later."""
    clock, queues, consumer = setup()
    consumer.probe_seconds = 1.0
    consumer.note_loaded("sd15")
    consumer.idle_since = clock.now - 30.0  # its own model has been quiet: it takes other groups
    assert consumer.preference()[0] == "sd15"  # probes sampled now: nothing waits anywhere
    top = queues["sd15"]
    inner = top.receive

    def long_poll(max_messages, wait_seconds):
        clock.now += 1.0  # the poll's wait, during which a flux job arrives
        put(queues, "flux-dev", "f")
        return inner(max_messages, wait_seconds)

    top.receive = long_poll
    assert take(consumer) == "f"
    assert consumer.stats.picks == {"flux": 1}


def test_ram_tier_beats_disk_beats_cold():
    tiers = {"flux-dev": DISK, "sd15": RAM}
    _clock, queues, consumer = setup(tiers=lambda: tiers)
    put(queues, "sdxl-base", "cold")
    put(queues, "flux-dev", "disk")
    put(queues, "sd15", "ram")
    assert [take(consumer), take(consumer), take(consumer)] == ["ram", "disk", "cold"]


def test_cold_groups_longest_backlog_first():
    _clock, queues, consumer = setup()
    put(queues, "sd15", "a1")
    for i in range(3):
        put(queues, "flux-dev", f"f{i}")
    assert take(consumer) == "f0"


def test_overdue_backlog_wins_over_the_loaded_model():
    clock, queues, consumer = setup(max_wait=30.0)
    consumer.note_loaded("sdxl-base")
    put(queues, "sd15", "starving")
    for i in range(10):
        put(queues, "sdxl-base", f"x{i}")
    assert take(consumer) == "x0"  # the sd15 backlog is young: stay on sdxl
    clock.now += 29.0
    assert take(consumer) == "x1"
    clock.now += 2.0  # sd15 has waited 31 s, never shrinking
    assert take(consumer) == "starving"
    assert consumer.stats.overdue_picks == 1
    assert take(consumer) == "x2"  # back to the loaded model


def test_a_shrinking_backlog_is_not_overdue():
    clock, queues, consumer = setup(max_wait=30.0)
    consumer.note_loaded("sdxl-base")
    for i in range(3):
        put(queues, "sd15", f"s{i}")
    for i in range(10):
        put(queues, "sdxl-base", f"x{i}")
    take(consumer)
    clock.now += 20.0
    other = queues["sd15"].receive(1, 0)  # another worker works the sd15 backlog off
    queues["sd15"].ack(other[0])
    take(consumer)
    clock.now += 20.0  # 40 s since the backlog appeared, 20 s since it last shrank
    assert take(consumer).startswith("x")
    clock.now += 12.0
    assert take(consumer) == "s1"


def test_release_and_extend_go_to_the_queue_the_job_came_from():
    _clock, queues, consumer = setup()
    put(queues, "flux-dev", "f")
    job = consumer.receive(1, 0)[0]
    consumer.extend(job, 100)
    assert queues["flux"].approximate_depth().in_flight == 1
    consumer.release(job, 0)
    assert queues["flux"].approximate_depth().waiting == 1
    with pytest.raises(QueueError, match="not received through this consumer"):
        consumer.ack(job)  # released: it belongs to the queue again
    assert take(consumer) == "f" and len(queues["flux"]) == 0


def test_receive_ahead_of_time_follows_the_running_jobs_model():
    """Prefetch (receive while a job runs) after the hook named the running job's model."""
    _clock, queues, consumer = setup()
    put(queues, "sd15", "s1")
    put(queues, "flux-dev", "f1")
    put(queues, "flux-dev", "f2")
    running = consumer.receive(1, 0)[0]  # cold start: the longest backlog (flux)
    assert running.message.job_id == "f1"
    consumer.note_loaded("flux-dev")
    prefetched = consumer.receive(1, 0)[0]
    assert prefetched.message.job_id == "f2"
    consumer.ack(running)
    consumer.ack(prefetched)


def test_workers_spread_over_cold_groups_of_equal_backlog():
    firsts = set()
    for worker in ("w1", "w2", "w3", "w4", "w5", "w6"):
        _clock, queues, consumer = setup(worker_id=worker)
        put(queues, "sd15", "s")
        put(queues, "flux-dev", "f")
        firsts.add(take(consumer))
    assert firsts == {"s", "f"}


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="max_wait_seconds"):
        AffinityConsumer([GroupQueue("a", InMemoryQueue(), lambda: 0)], GROUPS, max_wait_seconds=0)
    with pytest.raises(ValueError, match="at least one group queue"):
        AffinityConsumer([], GROUPS)


def test_the_worker_entry_point_reads_tiers_from_the_disk_cache_and_the_backends_ram_tier():
    from runtime.model_cache import HostRamTier
    from runtime.worker.__main__ import _warm_tiers

    class Cache:
        def models_on_disk(self):
            return ["sd15", "flux-dev"]

    class Backend:
        ram_tier = HostRamTier(1000)

    Backend.ram_tier.put("flux-dev", b"x")
    assert _warm_tiers(Cache(), Backend())() == {"sd15": DISK, "flux-dev": RAM}
    class NoRamTier:
        ram_tier = None  # the Backend interface's default

    assert _warm_tiers(None, NoRamTier())() == {}
