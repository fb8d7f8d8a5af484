"""Dynamic batching in the agent against SQS, DynamoDB and S3 on moto: compatible jobs run as one backend call,
and each keeps its own attempt, outputs, seed and record; a failed call, a cancel and a stop are settled per job.
The last test runs the real diffusers backend (a tiny pipeline, CPU) under the agent."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from bench.diffusers_models import tiny_sd
from fleetdev.worker_support import Stack, eventually, make_agent, run_in_thread
from runtime import metric_names as m
from runtime.backends.base import BackendError, JobContext
from runtime.backends.diffusers import DiffusersBackend
from runtime.backends.diffusers_options import DiffusersOptions
from runtime.backends.test_pattern import TestPatternBackend, render
from runtime.jobs.schema import JobSpec
from runtime.worker.lifecycle import SPOT, Notice

WAIT = 30.0  # generous: a loaded 2-core machine


@pytest.fixture
def stack(moto_endpoint):
    return Stack(moto_endpoint)


class Recording(TestPatternBackend):
    """test-pattern with batching, recording the job ids of every backend call."""

    def __init__(self, delay_seconds: float = 0.05, fail_batches_with: str | None = None) -> None:
        super().__init__(delay_seconds=delay_seconds)
        self.calls: list[list[str]] = []
        self.fail_batches_with = fail_batches_with
        self.lock = threading.Lock()

    def run(self, ctx: JobContext):
        return self.run_batch([ctx])[0]

    def run_batch(self, ctxs: list[JobContext]):
        with self.lock:
            self.calls.append([c.job.inputs.prompt for c in ctxs])
        if self.fail_batches_with in [c.job.inputs.prompt for c in ctxs]:
            if len(ctxs) > 1:  # a job that breaks the whole call (out of memory, a kernel error): nobody's fault known
                raise RuntimeError("CUDA error: an illegal memory access was encountered")
            return [BackendError("this job fails alone too")]
        return super().run_batch(ctxs)


def _submit(stack: Stack, prompts: list[str], size: int = 64) -> dict[str, str]:
    return {p: stack.submit(prompt=p, width=size, height=size, seed=i + 10) for i, p in enumerate(prompts)}


def _output(stack: Stack, record: dict[str, Any]) -> bytes:
    key = record["outputs"][0]["key"]
    return stack.s3.get_object(Bucket=stack.bucket, Key=key)["Body"].read()


def _batched_agent(stack: Stack, backend: Any, **config: Any):
    return make_agent(stack, stack.config(batch_max_jobs=4, batch_wait_ms=3000, **config), backend=backend)


def test_compatible_jobs_run_as_one_call_and_each_keeps_its_own_attempt_outputs_and_record(stack):
    ids = _submit(stack, ["a", "b", "c", "d"])
    ids["big"] = stack.submit(prompt="big", width=128, height=128, seed=5)  # another size: not in their batch
    backend = Recording()
    agent = _batched_agent(stack, backend)
    assert agent.run(max_jobs=5, idle_exit_seconds=10) == 5
    assert ["big"] in backend.calls and sorted(c for call in backend.calls if len(call) > 1 for c in call) == \
        ["a", "b", "c", "d"]  # the four 64x64 jobs shared calls; the 128x128 one ran alone
    for n, prompt in enumerate(["a", "b", "c", "d"]):
        record = stack.store.get(ids[prompt])
        assert record["status"] == "succeeded" and record["attempts"] == 1
        assert f"/{ids[prompt]}/" in record["outputs"][0]["key"]  # under its own job's attempt-scoped keys
        assert _output(stack, record) == render(prompt, n + 10, 64, 64)  # its own prompt and seed
    sizes = [r["BatchSize"] for r in agent.metrics.records if "BatchSize" in r]
    assert max(sizes) > 1 and sum(sizes) == 4  # one record per batch; the lone job is not a batch
    assert stack.counts() == (0, 0)


def test_a_call_that_fails_as_a_whole_reruns_each_job_alone_and_only_the_culprit_fails(stack):
    ids = _submit(stack, ["a", "poison", "b"])
    backend = Recording(fail_batches_with="poison")
    agent = _batched_agent(stack, backend)
    thread = run_in_thread(agent, idle_exit_seconds=3)
    stack.wait_status(ids["poison"], ("failed",), timeout=WAIT)
    thread.join(WAIT)
    assert not thread.is_alive()
    assert any(len(call) > 1 for call in backend.calls)  # the batch was tried
    for prompt in ("a", "b"):
        record = stack.store.get(ids[prompt])
        assert record["status"] == "succeeded" and record["attempts"] == 1  # not charged for the poison job
    poison = stack.store.get(ids["poison"])
    assert poison["attempts"] == stack.max_receive_count and "fails alone" in poison["error"]["message"]
    assert stack.counts() == (0, 0)


def _all_running(stack: Stack, ids: dict[str, str]) -> bool:
    return all(stack.store.get(j)["status"] == "running" for j in ids.values())


def test_a_job_canceled_mid_batch_ends_canceled_and_the_others_finish(stack):
    ids = _submit(stack, ["a", "b", "c"])
    backend = Recording(delay_seconds=3.0)
    agent = _batched_agent(stack, backend)
    thread = run_in_thread(agent, max_jobs=3)
    eventually(lambda: _all_running(stack, ids), WAIT, "the three jobs running in one batch")
    stack.store.request_cancel(ids["b"])
    thread.join(WAIT)
    assert not thread.is_alive()
    assert backend.calls == [["a", "b", "c"]]
    assert stack.store.get(ids["b"])["status"] == "canceled"
    assert all(stack.store.get(ids[p])["status"] == "succeeded" for p in ("a", "c"))
    assert not stack.store.get(ids["b"]).get("outputs")  # a canceled job points at no outputs
    assert stack.counts() == (0, 0)


def test_stop_mid_batch_hands_every_job_back_uncounted(stack):
    ids = _submit(stack, ["a", "b", "c"])
    agent = _batched_agent(stack, Recording(delay_seconds=30.0))
    thread = run_in_thread(agent)
    eventually(lambda: _all_running(stack, ids), WAIT, "the three jobs running in one batch")
    t = time.monotonic()
    agent.stop()
    eventually(lambda: stack.counts() == (3, 0), WAIT, "the three messages visible again")
    assert time.monotonic() - t < 10  # at once, not after the batch's 30 s
    thread.join(WAIT)
    assert not thread.is_alive()
    for job_id in ids.values():
        record = stack.store.get(job_id)
        assert record["status"] == "queued" and record["attempts"] == 0 and record["handbacks"] == 1
    rerun = make_agent(stack, stack.config(worker_id="i-other"))
    assert rerun.run(max_jobs=3, idle_exit_seconds=5) == 3
    assert all(stack.store.get(j)["status"] == "succeeded" for j in ids.values())


def test_a_spot_notice_whose_cutoff_comes_mid_batch_hands_the_whole_batch_back(stack):
    ids = _submit(stack, ["a", "b", "c"])
    agent = _batched_agent(stack, Recording(delay_seconds=30.0))
    thread = run_in_thread(agent)
    eventually(lambda: _all_running(stack, ids), WAIT, "the three jobs running in one batch")
    margin = agent.config.lifecycle.drain_margin_seconds
    agent.on_notice(Notice(SPOT, time.time() + margin + 1, "terminate"))  # no estimate yet: cut off in ~1 s
    eventually(lambda: stack.counts() == (3, 0), WAIT, "the three messages visible again")
    thread.join(WAIT)
    assert not thread.is_alive()
    for job_id in ids.values():
        record = stack.store.get(job_id)
        assert record["status"] == "queued" and record["attempts"] == 0 and record["handbacks"] == 1


@pytest.mark.parametrize(("claim_ahead", "overlap_settle"), [(False, False), (True, True)])
def test_a_saturated_queue_runs_every_job_once_in_batches(stack, claim_ahead, overlap_settle):
    prompts = [f"j{i}" for i in range(14)]
    ids = {p: stack.submit(prompt=p, width=64 * (1 + i % 2), height=64, seed=i)  # two batch keys, interleaved
           for i, p in enumerate(prompts)}
    backend = Recording(delay_seconds=0.2)
    agent = make_agent(stack, stack.config(batch_max_jobs=4, batch_wait_ms=50, claim_ahead=claim_ahead,
                                           overlap_settle=overlap_settle), backend=backend)
    assert agent.run(max_jobs=len(ids), idle_exit_seconds=10) == len(ids)
    assert sorted(p for call in backend.calls for p in call) == sorted(prompts)  # each job ran once
    assert all(len(call) <= 4 for call in backend.calls) and any(len(call) > 1 for call in backend.calls)
    records = [stack.store.get(j) for j in ids.values()]
    assert all(r["status"] == "succeeded" and r["attempts"] == 1 for r in records)
    assert stack.counts() == (0, 0)


class TinyDiffusers(DiffusersBackend):
    """The real diffusers backend on CPU; the model's folder comes from the test instead of the model cache."""

    def __init__(self, folder: Path) -> None:
        super().__init__(device="cpu", options=DiffusersOptions(compile="off", buckets=((64, 64),), host_ram_gib=0))
        self.folder = folder
        self.batches: list[int] = []

    def load_model(self, model_id: str, path: Path | None) -> None:
        super().load_model(model_id, path or self.folder)

    def run_batch(self, ctxs):
        self.batches.append(len(ctxs))
        return super().run_batch(ctxs)


def _pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


def test_the_diffusers_backend_batches_under_the_agent_and_each_job_gets_its_own_images(stack, tmp_path):
    folder = tiny_sd(tmp_path / "tiny@v1", seed=0)
    prompts = {"a cat": 1, "a dog": 2, "a cow": 3}
    ids = {p: stack.submit(model="tiny", prompt=p, width=64, height=64, steps=2, seed=s) for p, s in prompts.items()}
    backend = TinyDiffusers(folder)
    agent = make_agent(stack, stack.config(backend="diffusers", batch_max_jobs=3, batch_wait_ms=3000), backend)
    assert agent.run(max_jobs=3, idle_exit_seconds=10) == 3
    assert 3 in backend.batches  # one pipeline call for the three
    alone = TinyDiffusers(folder)
    alone.load_model("tiny", folder)
    for prompt, seed in prompts.items():
        record = stack.store.get(ids[prompt])
        assert record["status"] == "succeeded" and record["attempts"] == 1
        inputs = {"prompt": prompt, "width": 64, "height": 64, "steps": 2, "seed": seed}
        solo = alone.run(JobContext("solo", JobSpec.parse({"model": "tiny", "inputs": inputs})))
        # the job's own prompt and seed: the image it would get alone, up to batched-kernel rounding
        assert np.abs(_pixels(_output(stack, record)) - _pixels(solo.outputs[0].data)).max() <= 2
    assert [r[m.BATCH_SIZE] for r in agent.metrics.records if m.BATCH_SIZE in r] == [3]
