"""The prefetch holds received jobs without starting them: heartbeats keep them invisible, close hands them back."""

from __future__ import annotations

import threading
import time

import pytest

from runtime.queues.base import QueueMessage
from runtime.queues.memory import InMemoryQueue
from runtime.worker.prefetch import Prefetcher
from runtime.worker.settler import Settler

WAIT = 10.0  # generous: a loaded 2-core machine


def _queue(n: int, visibility: float = 30.0) -> InMemoryQueue:
    q = InMemoryQueue(visibility_timeout=visibility)
    for i in range(n):
        q.send(QueueMessage(job_id=f"j_{i}", job={"model": "m", "inputs": {"prompt": str(i)}}))
    return q


def _visible(q: InMemoryQueue) -> int:
    return q.approximate_depth().waiting


def _eventually(check, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_holds_at_most_capacity_and_prepares_inputs_before_the_take():
    q = _queue(3)
    seen = []
    p = Prefetcher(q, capacity=1, wait_seconds=0.2, visibility_seconds=30,
                   prepare_inputs=lambda job: seen.append(job.inputs.prompt) or {"image": b"x"}).start()
    try:
        _eventually(lambda: p.held() == 1, "one job held")
        time.sleep(0.3)  # a few receive rounds: still one held, two left on the queue
        assert p.held() == 1 and _visible(q) == 2
        item = p.take(WAIT)
        assert item is not None and item.received.message.job_id == "j_0"
        assert item.inputs == {"image": b"x"} and seen[0] == "0"
        _eventually(lambda: p.held() == 1 and _visible(q) == 1, "the next one received while j_0 is out")
    finally:
        p.close(join_seconds=WAIT)


def test_close_hands_held_messages_back_at_once():
    q = _queue(1)
    p = Prefetcher(q, capacity=1, wait_seconds=0.2, visibility_seconds=30, prepare_inputs=lambda spec: {}).start()
    _eventually(lambda: p.held() == 1, "one job held")
    assert _visible(q) == 0
    assert p.close(join_seconds=WAIT) == 1
    assert _visible(q) == 1  # visibility 0: another worker can take it now, not in 30 s
    assert p.take(0.01) is None


def test_held_messages_are_heartbeated_past_their_visibility():
    q = _queue(1, visibility=1.0)
    p = Prefetcher(q, capacity=1, wait_seconds=0.2, visibility_seconds=1.0, prepare_inputs=lambda spec: {}).start()
    try:
        _eventually(lambda: p.held() == 1, "one job held")
        time.sleep(2.5)  # more than twice the visibility timeout
        assert _visible(q) == 0 and p.held() == 1  # never visible to a second worker meanwhile
        entry = q._entries[0]
        assert entry.receive_count == 1
    finally:
        p.close(join_seconds=WAIT)


def test_a_preparation_failure_is_kept_for_the_attempt():
    q = _queue(1)
    boom = ValueError("bad input URL")

    def fail(spec):
        raise boom

    p = Prefetcher(q, capacity=1, wait_seconds=0.2, visibility_seconds=30, prepare_inputs=fail).start()
    try:
        item = p.take(WAIT)
        assert item is not None and item.input_error is boom and item.inputs is None
    finally:
        p.close(join_seconds=WAIT)


def test_budget_limits_what_is_received():
    q = _queue(3)
    p = Prefetcher(q, capacity=2, wait_seconds=0.2, visibility_seconds=30, prepare_inputs=lambda spec: {},
                   budget=1).start()
    try:
        assert p.take(WAIT) is not None
        time.sleep(0.3)
        assert p.held() == 0 and _visible(q) == 2
    finally:
        p.close(join_seconds=WAIT)


def test_push_front_after_close_hands_back():
    q = _queue(1)
    p = Prefetcher(q, capacity=1, wait_seconds=0.2, visibility_seconds=30, prepare_inputs=lambda spec: {}).start()
    item = p.take(WAIT)
    assert item is not None
    p.close(join_seconds=WAIT)
    p.push_front(item)
    assert _visible(q) == 1


def test_settler_runs_at_most_its_lanes_at_once():
    settler = Settler(lanes=2)
    running, peak, lock, gate = [0], [0], threading.Lock(), threading.Event()

    def settle():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        gate.wait(WAIT)
        with lock:
            running[0] -= 1

    threading.Timer(0.3, gate.set).start()
    for _ in range(4):
        settler.submit(settle)  # the third waits for a free lane
    settler.wait()
    assert peak[0] == 2 and running[0] == 0 and not settler.busy()
    settler.close()


def test_each_spec_is_read_once_into_the_typed_model_and_one_that_breaks_the_rules_is_an_input_error():
    """The prefetch reads the message's spec with the API's rules (runtime.worker.inputs.read_job): the attempt
    and the backend get the typed model with the API's defaults; a spec the API would refuse never reaches
    the inputs or the model cache, and its error (permanent) names the field."""
    from runtime.backends.base import JobInputError

    q = InMemoryQueue(visibility_timeout=30)
    q.send(QueueMessage(job_id="j_ok", job={"model": "m", "inputs": {"prompt": "a cat"}}))
    q.send(QueueMessage(job_id="j_bad", job={"model": "m", "inputs": {"prompt": "a cat", "steps": 500}}))
    reads, models = [], []

    def read(data):
        from runtime.worker.inputs import read_job

        reads.append(data)
        return read_job(data)

    p = Prefetcher(q, capacity=2, wait_seconds=0.2, visibility_seconds=30, prepare_inputs=lambda job: {},
                   prepare_model=models.append, read_job=read).start()
    try:
        ok, bad = p.take(WAIT), p.take(WAIT)
        assert ok is not None and bad is not None
        assert ok.job is not None and ok.job.inputs.steps == 30 and ok.job.inputs.width == 1024  # API defaults
        assert bad.job is None and isinstance(bad.input_error, JobInputError)
        assert "inputs.steps" in str(bad.input_error) and "[range]" in str(bad.input_error)
        assert models == ["m"] and len(reads) == 2  # one read per message; the bad one loads no model
    finally:
        p.close(join_seconds=WAIT)
