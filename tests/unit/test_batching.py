"""Dynamic batching, unit level: which prefetched jobs the agent groups, how many, and the backends' keys."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.agent_config import AgentConfigError, parse
from runtime.backends.base import JobInputError, JobInterrupted, backend_class
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_batch import chunks
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.backends.test_pattern import TestPatternBackend
from runtime.queues.base import QueueMessage, ReceivedJob
from runtime.queues.memory import InMemoryQueue
from runtime.worker.batching import batch_size_for, key_of
from runtime.worker.inputs import read_job
from runtime.worker.prefetch import Prefetcher, Prepared
from tests.job_context import job_context

WAIT = 10.0  # generous: a loaded 2-core machine


def _prepared(job_id: str, inputs: dict[str, Any] | None = None, model: str = "m", error: Exception | None = None):
    """A prefetched job as the prefetch leaves it: its spec read once (or the reason it does not parse)."""
    message = QueueMessage(job_id=job_id, job={"model": model, "task": "txt2img", "inputs": inputs or {}})
    item = Prepared(ReceivedJob(message, handle=job_id), inputs={}, input_error=error)
    try:
        item.job = read_job(message.job)
    except JobInputError as exc:
        item.input_error = exc
    return item


def _prefetcher(jobs: list[tuple[str, dict[str, Any]]], capacity: int = 8) -> tuple[Prefetcher, InMemoryQueue]:
    q = InMemoryQueue(visibility_timeout=30)
    for job_id, inputs in jobs:
        q.send(QueueMessage(job_id=job_id, job={"model": "m", "inputs": inputs}))
    return Prefetcher(q, capacity=capacity, wait_seconds=0.1, visibility_seconds=30,
                      prepare_inputs=lambda spec: {}), q


def _wait_held(p: Prefetcher, n: int) -> None:
    deadline = time.monotonic() + WAIT
    while p.held() < n:
        assert time.monotonic() < deadline, f"never held {n} jobs"
        time.sleep(0.01)


def _size(item: Prepared) -> Any:
    return item.received.message.job["inputs"]["size"]


def test_take_matching_takes_compatible_jobs_in_order_and_leaves_the_others_in_place():
    p, _ = _prefetcher([("a", {"size": 1}), ("b", {"size": 2}), ("c", {"size": 1}), ("d", {"size": 1})])
    p.start()
    try:
        _wait_held(p, 4)
        got = p.take_matching(lambda item: _size(item) == 1, limit=2, timeout=0.0)
        assert [i.received.message.job_id for i in got] == ["a", "c"]  # the limit leaves "d" behind
        assert [p.take(WAIT).received.message.job_id for _ in range(2)] == ["b", "d"]  # order kept
    finally:
        p.close(join_seconds=WAIT)


def test_take_matching_waits_for_a_compatible_job_to_arrive_but_no_longer_than_told():
    p, q = _prefetcher([("a", {"size": 1})])
    p.start()
    try:
        _wait_held(p, 1)
        t = time.monotonic()
        assert p.take_matching(lambda item: _size(item) == 2, limit=1, timeout=0.3) == []
        assert 0.25 <= time.monotonic() - t < WAIT
        threading.Timer(0.2, lambda: q.send(QueueMessage(job_id="late", job={"model": "m",
                                                                               "inputs": {"size": 2}}))).start()
        got = p.take_matching(lambda item: _size(item) == 2, limit=1, timeout=WAIT)
        assert [i.received.message.job_id for i in got] == ["late"]  # came while the batch waited
        assert p.held() == 1  # "a" is still held for the next loop
    finally:
        p.close(join_seconds=WAIT)


def test_diffusers_batch_key_groups_only_what_one_pipeline_call_can_serve():
    backend = DiffusersBackend(device="cpu", options=DiffusersOptions(host_ram_gib=0))
    base = {"prompt": "a cat", "steps": 20, "width": 512, "height": 512, "seed": 1}
    key = key_of(backend, _prepared("a", base))
    assert key is not None
    assert key_of(backend, _prepared("b", {**base, "prompt": "a dog", "seed": 7})) == key  # per-job inputs
    for change in ({"steps": 21}, {"width": 768}, {"scheduler": "euler"}, {"guidance": 5.0}):
        assert key_of(backend, _prepared("c", {**base, **change})) != key, change
    assert key_of(backend, _prepared("d", base, model="other")) != key
    assert key_of(backend, _prepared("e", {**base, "steps": 0})) is None  # invalid spec: runs alone, fails alone
    assert key_of(backend, _prepared("f", base, error=OSError("input fetch failed"))) is None


def _config_of(**config: Any) -> Any:
    return SimpleNamespace(batch_max_jobs=config.get("batch_max_jobs"))


@pytest.mark.parametrize(("device", "options", "expected"), [
    ("cpu", {}, 1),  # no measured gain on CPU: off
    ("cuda", {"compile": "off", "max_batch": 4}, 4),  # eager on a GPU: batching measured a gain
    ("cuda", {"compile": "on", "batch_sizes": [1]}, 1),  # compiled for one image only: a batch would run eager
    ("cuda", {"compile": "on", "batch_sizes": [1, 2, 4], "max_batch": 8}, 4),
])
def test_batch_size_defaults_to_what_the_backend_recommends(device, options, expected):
    backend = DiffusersBackend(device=device, options=DiffusersOptions.from_mapping({**options, "host_ram_gib": 0}))
    assert batch_size_for(backend, _config_of()) == expected
    assert batch_size_for(backend, _config_of(batch_max_jobs=3)) == 3  # the config wins


def test_backends_that_do_not_batch_never_batch():
    class OneAtATime(TestPatternBackend):
        supports_batching = False  # e.g. ComfyUI, A1111 and Neuron: the Backend interface's defaults

    assert batch_size_for(OneAtATime(delay_seconds=0), _config_of(batch_max_jobs=8)) == 1
    assert batch_size_for(TestPatternBackend(delay_seconds=0), _config_of()) == 1  # no gain to claim: off by default
    for name in ("comfyui", "a1111", "neuron"):
        assert backend_class(name).supports_batching is False, name


def _config(**keys: Any) -> dict[str, Any]:
    return {"stack": "s", "region": "us-east-1", "queue": {"kind": "sqs", "url": "https://q"}, "job_table": "t",
            "outputs": {"bucket": "b", "cdn_base_url": "https://cdn"}, "backend": "diffusers", **keys}


def test_config_keys_have_defaults_and_errors_name_the_key():
    config = parse(_config())
    assert config.batch_max_jobs is None and config.batch_wait_ms == 20.0
    assert parse(_config(batch_max_jobs=4, batch_wait_ms=50)).batch_max_jobs == 4
    for bad, key in (({"batch_max_jobs": 0}, "batch_max_jobs"), ({"batch_max_jobs": 65}, "batch_max_jobs"),
                     ({"batch_wait_ms": -1}, "batch_wait_ms"), ({"batch_max_jobs": "many"}, "batch_max_jobs")):
        with pytest.raises(AgentConfigError, match=key):
            parse(_config(**bad))


def test_test_pattern_batch_costs_one_delay_and_a_canceled_member_ends_interrupted():
    backend = TestPatternBackend(delay_seconds=0.3)
    ctxs = [job_context(f"j{i}", prompt="p", seed=i, width=64, height=64) for i in range(3)]
    ctxs[1].cancel.set()
    t = time.monotonic()
    results = backend.run_batch(ctxs)
    assert time.monotonic() - t < 0.3 * 3  # one delay for the batch, not one per job
    assert isinstance(results[1], JobInterrupted)
    assert results[0].outputs[0].data != results[2].outputs[0].data  # each job its own seed and image
    assert results[0].metadata["seed"] == 0 and results[2].metadata["seed"] == 2


@pytest.mark.parametrize(("counts", "compiled", "max_batch", "expected"), [
    ([1, 1, 1, 1, 1], (), 4, [[0, 1, 2, 3], [4]]),  # eager: max_batch jobs a call
    ([1, 1, 1], (1, 2, 4), 4, [[0, 1], [2]]),  # 3 has no graph: 2 + 1, both compiled
    ([1, 1, 1, 1, 1], (1, 2, 4), 4, [[0, 1, 2, 3], [4]]),
    ([2, 1, 1], (1, 2, 4), 4, [[0, 1, 2]]),  # images, not jobs, pick the graph: 2 + 1 + 1 = 4
    ([3, 1], (1, 2, 4), 4, [[0, 1]]),
    ([3, 2], (1, 2, 4), 4, [[0], [1]]),  # 3 fits no graph: alone (eager); 5 neither
    ([1, 1, 1, 1], (1,), 4, [[0], [1], [2], [3]]),  # compiled for one image only: never batched
])
def test_diffusers_cuts_a_batch_into_calls_on_compiled_graphs(counts, compiled, max_batch, expected):
    assert chunks(counts, compiled, max_batch) == expected


def test_neuron_jobs_are_never_batched_by_the_agent():
    from runtime.backends.neuron import NeuronBackend

    backend = NeuronBackend(options=DiffusersOptions(host_ram_gib=0))
    assert key_of(backend, _prepared("a", {"prompt": "p", "steps": 20})) is None
