"""The agent's parts on their own (runtime.worker.*): the one execution path, the supervisor's interrupts, the
checkpoint, and the optional hooks the Backend and consumer interfaces declare."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from runtime.backends.base import (
    Backend,
    BackendError,
    BackendResult,
    BackendUnavailable,
    JobContext,
    JobInputError,
    JobInterrupted,
    OutputFile,
)
from runtime.jobs.attempts import Attempt
from runtime.jobs.schema import JobSpec
from runtime.queues.base import QueueDepth, QueueMessage, ReceivedJob
from runtime.queues.memory import InMemoryQueue
from runtime.worker.backend_supervisor import BackendSupervisor
from runtime.worker.backoff import InfraBackoff
from runtime.worker.checkpoint import Checkpoint
from runtime.worker.execution import Executor
from runtime.worker.guard import stop_reason
from runtime.worker.metrics import Metrics
from runtime.worker.outcomes import Outcome, StopReason
from runtime.worker.recorder import JobRecorder
from runtime.worker.running_job import RunningJob
from runtime.worker.settler import Settler
from runtime.worker.stop_signal import StopSignal


class Fake(Backend):
    """Records each call; ``fail_batches`` makes every multi-job call fail as a whole."""

    name = "fake"
    supports_batching = True
    uses_model_files = False

    def __init__(self, fail_batches: bool = False, fail_alone: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.loads: list[str] = []
        self.interrupted: list[str] = []
        self.fail_batches, self.fail_alone = fail_batches, fail_alone
        self.ready_waits = 0

    def wait_ready(self, timeout: float) -> None:
        self.ready_waits += 1

    def load_model(self, model_id, path) -> None:
        self.loads.append(model_id)

    def run(self, ctx: JobContext) -> BackendResult:
        self.calls.append(("run", [ctx.job_id]))
        if ctx.job_id in self.fail_alone:
            raise BackendUnavailable("down")
        return BackendResult([OutputFile("a.png", b"x", "image/png")])

    def run_batch(self, ctxs):
        self.calls.append(("run_batch", [c.job_id for c in ctxs]))
        if self.fail_batches:
            raise RuntimeError("CUDA error: out of memory")
        return [BackendResult([OutputFile("a.png", b"x", "image/png")]) for _ in ctxs]

    def interrupt(self, ctx: JobContext) -> None:
        self.interrupted.append(ctx.job_id)
        super().interrupt(ctx)


SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "p", "seed": 1}}


def _job(job_id: str, lease: int = 1) -> RunningJob:
    message = QueueMessage(job_id=job_id, job=SPEC)
    ctx = JobContext(job_id=job_id, job=JobSpec.parse(SPEC))
    return RunningJob(ReceivedJob(message, handle=job_id), ctx, Attempt("started", {}, 1, lease))


class Settled:
    """Stands in for runtime.worker.settlement.Settlement: what each job was settled with, and where."""

    def __init__(self) -> None:
        self.answers: dict[str, Any] = {}
        self.threads: dict[str, str] = {}

    def settle(self, job: RunningJob, answer: Any) -> Outcome:
        self.answers[job.job_id] = answer
        self.threads[job.job_id] = threading.current_thread().name
        return Outcome.SUCCEEDED if isinstance(answer, BackendResult) else Outcome.RETRYING


def build_executor(backend: Any, stop: StopSignal | None = None, checkpoint: Any = None,
                   model_cache: Any = None) -> tuple[Executor, Settled, BackendSupervisor]:
    """An executor over ``backend`` with stand-in settlement, lifecycle and fetcher (also used by
    test_extra_models); ``checkpoint`` defaults to one that passes."""
    stop = stop or StopSignal()
    metrics = Metrics(sink="memory")
    supervisor = BackendSupervisor(backend, metrics=metrics, worker_id="w", ready_timeout_s=1, stop=stop,
                                   on_model=lambda model: None)
    recorder = JobRecorder(metrics=metrics, worker_id="w", backoff=InfraBackoff(stop), on_success=lambda s: None)
    settled = Settled()
    executor = Executor(supervisor=supervisor, settlement=settled, recorder=recorder,
                        checkpoint=checkpoint or (lambda job, fresh_s=0.0: None), metrics=metrics, worker_id="w",
                        lifecycle=SimpleNamespace(protect=lambda on: None), stop=stop,
                        fetcher=SimpleNamespace(fetch_all=lambda spec: {}), model_cache=model_cache)
    return executor, settled, supervisor


def _executor(backend: Fake, stop: StopSignal | None = None) -> tuple[Executor, Settled, BackendSupervisor]:
    return build_executor(backend, stop, checkpoint=lambda job, fresh_s=0.0: _raise_if_stopped(job))


def _raise_if_stopped(job: RunningJob) -> None:
    if job.reason is not None:
        raise JobInterrupted(f"{job.job_id} ({job.reason})")


def test_one_job_is_a_batch_of_one_on_the_same_path():
    backend = Fake()
    executor, settled, _ = _executor(backend)
    assert executor.execute([_job("a")]) == [Outcome.SUCCEEDED]
    assert executor.execute([_job("b"), _job("c")]) == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert backend.calls == [("run", ["a"]), ("run_batch", ["b", "c"])]
    assert backend.loads == ["m", "m"]  # the model is loaded once per call, alone or batched
    assert set(settled.answers) == {"a", "b", "c"}


def test_a_batch_that_fails_as_a_whole_runs_each_job_alone_once():
    backend = Fake(fail_batches=True, fail_alone=("c",))
    executor, settled, supervisor = _executor(backend)
    assert executor.execute([_job("b"), _job("c")]) == [Outcome.SUCCEEDED, Outcome.RETRYING]
    assert backend.calls == [("run_batch", ["b", "c"]), ("run", ["b"]), ("run", ["c"])]
    assert isinstance(settled.answers["c"], BackendUnavailable)
    supervisor.ensure_ready()  # a lost backend is waited for before the next job, once
    supervisor.ensure_ready()
    assert backend.ready_waits == 1


def test_results_settle_on_the_lane_and_failures_before_the_next_claim():
    backend = Fake(fail_alone=("bad",))
    executor, settled, _ = _executor(backend)
    settler = Settler(lanes=1)
    try:
        assert executor.execute([_job("ok")], settler) == [Outcome.SETTLING]
        assert executor.execute([_job("bad")], settler) == [Outcome.RETRYING]
        settler.wait()
    finally:
        settler.close()
    assert settled.threads["ok"].startswith("settle-") and not settled.threads["bad"].startswith("settle-")


def test_jobs_claimed_ahead_of_a_stop_go_back_before_the_backend_is_called():
    backend = Fake()
    stop = StopSignal()
    executor, settled, _ = _executor(backend, stop)
    stop.drain()
    jobs = [_job("a"), _job("b")]
    executor.execute(jobs)
    assert backend.calls == [] and all(job.reason is StopReason.DRAIN for job in jobs)
    assert all(isinstance(answer, JobInterrupted) for answer in settled.answers.values())


def test_a_stop_of_the_first_job_stops_the_whole_call_and_a_cancel_only_its_job():
    backend = Fake()
    supervisor = BackendSupervisor(backend, metrics=Metrics(sink="memory"), worker_id="w", ready_timeout_s=1,
                                   stop=StopSignal(), on_model=lambda model: None)
    a, b, c = _job("a"), _job("b"), _job("c")
    supervisor.interrupt(a, StopReason.DRAIN)  # not on the backend (being settled): only the reason is noted
    assert a.reason is StopReason.DRAIN and backend.interrupted == []
    a.reason = None
    with supervisor.occupy([a, b, c]):
        assert supervisor.current is a
        supervisor.interrupt(b, StopReason.CANCEL)
        assert backend.interrupted == ["b"] and a.reason is None and c.reason is None
        supervisor.interrupt(a, StopReason.STOP)
        assert backend.interrupted[:2] == ["b", "a"] and set(backend.interrupted[2:]) == {"b", "c"}
    assert b.reason is StopReason.CANCEL  # a cancel is not turned into a hand-back
    assert (a.reason, c.reason) == (StopReason.STOP, StopReason.STOP)
    assert supervisor.current is None
    supervisor.interrupt(c, StopReason.LOST_LEASE)
    assert c.reason is StopReason.LOST_LEASE  # a lost lease decides how the attempt settles


def test_a_checkpoint_keeps_a_stop_given_while_it_read_the_record():
    job = _job("a", lease=3)
    job.claimed = 0.0  # read the record: the claim is not fresh

    class SlowStore:
        def get(self, job_id):  # the agent's stop lands while the read is in flight; the record still names us
            job.reason = StopReason.STOP
            return {"status": "running", "lease": 3}

    with pytest.raises(JobInterrupted):
        Checkpoint(SlowStore())(job)
    assert job.reason is StopReason.STOP


def test_the_lease_check_is_one_function():
    assert stop_reason({"status": "running", "lease": 2}, 2) is None
    assert stop_reason({"status": "running", "lease": 2, "cancel_requested": True}, 2) is StopReason.CANCEL
    assert stop_reason({"status": "canceled", "lease": 2}, 2) is StopReason.CANCEL
    assert stop_reason({"status": "running", "lease": 3}, 2) is StopReason.LOST_LEASE
    assert stop_reason({"status": "succeeded", "lease": 2}, 2) is StopReason.LOST_LEASE
    assert stop_reason(None, 2) is StopReason.LOST_LEASE


def test_optional_hooks_have_declared_defaults():
    class Plain(Backend):
        def wait_ready(self, timeout):
            return None

        def run(self, ctx):
            if ctx.job_id == "bad":
                raise JobInputError("no")
            return BackendResult([])

    plain = Plain()
    assert plain.supports_batching is False and plain.batch_default_jobs() == 1
    spec = JobSpec.parse(SPEC)
    assert plain.batch_key(JobContext(job_id="a", job=spec)) is None
    out = plain.run_batch([JobContext(job_id="a", job=spec), JobContext(job_id="bad", job=spec)])
    assert isinstance(out[0], BackendResult) and isinstance(out[1], BackendError)

    queue = InMemoryQueue(visibility_timeout=30)
    queue.send(QueueMessage(job_id="j", job={}))
    [received] = queue.receive(1, 0)
    queue.note_loaded("m")  # model affinity: nothing to do for a plain queue
    queue.dead_letter(received, "attempts exhausted")  # default: acknowledged (the record holds the failure)
    assert queue.receive(1, 0) == [] and queue.approximate_depth() == QueueDepth(waiting=0, in_flight=0)


def test_enums_say_what_the_loop_does_with_them():
    assert {o for o in Outcome if o.troubled} == {Outcome.DEFERRED, Outcome.UNSETTLED}
    assert {r for r in StopReason if r.hands_back} == {StopReason.DRAIN, StopReason.STOP}
    assert Outcome.HANDED_BACK == "handed-back" and f"{StopReason.LOST_LEASE}" == "lost-lease"
