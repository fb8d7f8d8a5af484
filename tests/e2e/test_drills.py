"""Failure drills over local mode. Each prints ``jobs submitted / succeeded / failed / duplicated`` and
asserts that no job was lost and none was done twice (fleetdev.local.audit counts both from moto's state:
job records, attempts, and every version of every output in the versioned outputs bucket).

1. SIGKILL of one agent during a batch (SQS and Kafka): its job's lease runs out (SQS visibility; Kafka
   session timeout, then the partition moves) and the other agent finishes it.
2. Spot notice through one agent's fake IMDS: it drains (hands its job back), completes the terminating
   lifecycle action and exits; the other agent finishes the job.
3. Backend down and back, with A1111 and with ComfyUI (tests/fakes/): one agent's backend stops listening
   mid-batch and comes back on the same port; the failed attempt is retried, the agent recovers. The
   ComfyUI variant also runs the model path: checkpoint in the local model store -> agent cache -> link.
4. A poison job (every attempt fails): failed after max_receive_count attempts counted in its record.
5. The local AWS endpoint frozen for 30 s (SIGSTOP of the moto server, then SIGCONT) while jobs run and
   new ones are submitted: the API and the agents wait and retry, then everything completes. A variant
   checks that a create whose DynamoDB write botocore retried after a read timeout still enqueues the job.

Visibility timeouts are short (seconds) so that redelivery happens within the test's time.
"""

from __future__ import annotations

import os
import threading
import time

import pytest

from runtime.worker.aws import RecordingAutoScaling
from tests.e2e._helpers import assert_clean, record, run_began_on, running_on, store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# 30 s by definition of the drill; longer (GENAI_DRILL_FREEZE_SECONDS=70) outlasts the clients' read
# timeouts (agents 30 s, API 60 s) so that their retries, not just their patience, are exercised.
FREEZE_SECONDS = float(os.environ.get("GENAI_DRILL_FREEZE_SECONDS", "30"))


@pytest.mark.parametrize("queue_kind", ["sqs", "kafka"])
def test_sigkill_one_worker_during_a_batch(start_platform, queue_kind: str) -> None:
    platform = start_platform(queue_kind=queue_kind, test_pattern_delay_seconds=1.5, visibility_timeout_seconds=4)
    w0, w1 = platform.workers
    ids = platform.ledger.submit_batch(10)
    victim_job = wait_until(run_began_on(platform, ids, w0.instance_id, within=0.5), 20,
                            "a job whose run just began on worker-0")

    w0.process.kill()  # SIGKILL: no hand-back, no cleanup; the message's lease has to run out

    views = platform.ledger.wait_final(ids, timeout=60)
    report = platform.ledger.report(ids)
    record(f"drill SIGKILL worker ({queue_kind})", report)
    assert_clean(report, submitted=10)
    assert all(v["status"] == "succeeded" for v in views.values())
    victim = store(platform).get(victim_job)
    assert victim["worker_id"] == w1.instance_id, victim
    if queue_kind == "sqs":  # Kafka has no receive count: a re-read after a crash is attempt 1 again
        assert victim["attempts"] >= 2, victim


def test_spot_notice_drains_and_hands_back(start_platform) -> None:
    platform = start_platform(test_pattern_delay_seconds=3.0, visibility_timeout_seconds=10)
    w0, w1 = platform.workers
    ids = platform.ledger.submit_batch(4)
    handed_back = wait_until(lambda: running_on(platform, ids, w0.instance_id, started_within=1.0), 20,
                             "a job that just started on worker-0")

    w0.imds.set_spot_interruption(in_seconds=3)  # less than the job needs (+ drain margin): hand it back

    wait_until(lambda: not w0.process.alive(), 20, "worker-0 to drain and exit")
    assert w0.process.proc.returncode == 0, w0.process.tail()
    views = platform.ledger.wait_final(ids, timeout=60)
    report = platform.ledger.report(ids)
    record("drill spot notice", report)
    assert_clean(report, submitted=4)
    assert all(v["status"] == "succeeded" for v in views.values())
    job = store(platform).get(handed_back)
    # handed back, not failed: the hand-back gave its attempt back, and the record says it happened
    assert job["worker_id"] == w1.instance_id and job["attempts"] == 1 and job["handbacks"] >= 1, job
    calls = RecordingAutoScaling.read(w0.autoscaling_log)
    terminating = [c for c in calls if c["op"] == "complete_lifecycle_action"
                   and c["hook"] == f"{platform.options.prefix}-terminating"]
    assert terminating and terminating[-1]["instance_id"] == w0.instance_id, calls
    assert f"job {handed_back} handed back (drain" in w0.process.log_path.read_text()


@pytest.mark.parametrize("backend", ["a1111", "comfyui"])
def test_backend_down_and_back(start_platform, tmp_path, backend: str) -> None:
    fakes_module = pytest.importorskip(f"tests.fakes.fake_{backend}")
    fake_class = fakes_module.FakeA1111 if backend == "a1111" else fakes_module.FakeComfyUI
    model_dirs = [tmp_path / f"{backend}-models-{i}" for i in range(2)]
    fakes = [fake_class(d, delay=0.5).start() for d in model_dirs]
    options = {}
    if backend == "comfyui":  # its default graph needs a checkpoint: the real model store -> cache -> link path
        checkpoint = tmp_path / "sdxl-base-1.0.safetensors"
        checkpoint.write_bytes(b"not really weights" * 1000)
        options = {"models": {"sdxl-base-1.0": str(checkpoint)}, "backend_model_dirs": [str(d) for d in model_dirs]}
    try:
        # A prompt lost in the crash must not hold an agent for long: the job time limit (20 s) ends it.
        platform = start_platform(backend=backend, backend_urls=[f.url for f in fakes], max_receive_count=5,
                                  visibility_timeout_seconds=6, worker_overrides={"max_job_seconds": 20}, **options)
        w0 = platform.workers[0]
        ids = platform.ledger.submit_batch(12, width=64, height=64)
        wait_until(lambda: running_on(platform, ids, w0.instance_id), 20, "a job running on worker-0")

        fakes[0].stop()  # worker-0's backend crashes: connection refused from now on
        s = store(platform)
        wait_until(lambda: any(s.get(j)["attempt_errors"] for j in ids), 20, "a failed attempt on worker-0")
        time.sleep(3)
        fakes[0].start()  # back on the same port
        back_at = time.time()

        views = platform.ledger.wait_final(ids, timeout=90)
        if any(v["status"] != "succeeded" for v in views.values()):
            _dump_fake_state(fakes)
        report = platform.ledger.report(ids)
        record(f"drill backend down and back ({backend})", report)
        limits = [e for j in ids for e in s.get(j)["attempt_errors"] if "time limit" in e.get("message", "")]
        if limits:
            print(f"{len(limits)} attempt(s) ended by the job time limit: {limits}")
        assert_clean(report, submitted=12)
        assert all(v["status"] == "succeeded" for v in views.values())
        records = [s.get(j) for j in ids]
        assert any(r["attempt_errors"] for r in records)
        if any(r["completed_at"] > back_at + 2 for r in records):  # work left after the restart
            assert any(r["worker_id"] == w0.instance_id and r["completed_at"] > back_at for r in records), \
                "worker-0 did not take jobs again after its backend came back"
        assert w0.process.alive()
    finally:
        for f in fakes:
            f.stop()


def _dump_fake_state(fakes: list) -> None:
    """On a stuck job: what the fake backends hold and where their threads are (they run in this process)."""
    import sys
    import traceback

    for i, fake in enumerate(fakes):
        print(f"fake {i}: pending={getattr(fake, '_pending', None)} running={getattr(fake, '_running', None)} "
              f"history={len(getattr(fake, 'history', {}))} last requests={fake.requests[-8:]}")
    for thread_id, frame in sys._current_frames().items():
        stack = "".join(traceback.format_stack(frame)[-4:])
        if "fakes" in stack:
            print(f"--- thread {thread_id}\n{stack}")


def test_poison_job_fails_after_its_counted_attempts(start_platform, tmp_path) -> None:
    """A job whose every attempt fails ends ``failed`` after max_receive_count attempts counted in its record,
    with the history of each; the agent settles it, so its message is removed rather than dead-lettered
    (the DLQ is for what no worker could settle: the chaos harness drives that); the jobs around it are
    unaffected (nothing lost, nothing retried forever)."""
    fake_a1111 = pytest.importorskip("tests.fakes.fake_a1111")
    fake = fake_a1111.FakeA1111(tmp_path / "models", delay=0.1).start()
    try:
        platform = start_platform(backend="a1111", backend_url=fake.url, workers=1, max_receive_count=3,
                                  visibility_timeout_seconds=6)
        ledger = platform.ledger
        good = ledger.submit_batch(2, width=64, height=64)
        ledger.wait_final(good, timeout=30)
        fake.fail_generations = 3  # the next three generations answer 500: every attempt of the poison job
        poison = ledger.submit(prompt="poison", width=64, height=64)["id"]
        views = ledger.wait_final([poison], timeout=60)
        after = ledger.submit_batch(2, width=64, height=64)
        views.update(ledger.wait_final(after, timeout=30))
        report = ledger.report()
        record("drill poison job", report)
        assert report.lost == 0 and report.duplicated == 0 and report.extra_jobs == 0, report.problems
        assert (report.succeeded, report.failed, report.dlq) == (4, 1, 0), report.line()
        failed = store(platform).get(poison)
        assert views[poison]["status"] == "failed" and failed["error"]["code"] == "attempts-exhausted", failed
        assert [e["attempt"] for e in failed["attempt_errors"]] == [1, 2, 3], failed["attempt_errors"]
        assert failed["attempts"] == 3 and "3 attempt(s)" in failed["error"]["message"], failed
    finally:
        fake.stop()


def test_aws_endpoint_frozen_for_30s(start_platform) -> None:
    # The lease outlasts the freeze, as on AWS (360 s visibility); short leases are the SIGKILL drill's topic.
    platform = start_platform(test_pattern_delay_seconds=0.5, visibility_timeout_seconds=60)
    ledger = platform.ledger
    ids = ledger.submit_batch(8)
    wait_until(lambda: sum(v["status"] == "succeeded" for v in map(ledger.get, ids)) >= 2, 20, "two jobs done")

    during: list[str] = []
    errors: list[BaseException] = []

    def submit_during_freeze() -> None:
        try:
            during.extend(ledger.submit_batch(2, retry_for=90 + FREEZE_SECONDS))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    platform.freeze_aws()
    frozen_at = time.monotonic()
    try:
        submitter = threading.Thread(target=submit_during_freeze, daemon=True)
        submitter.start()
        time.sleep(FREEZE_SECONDS)
    finally:
        platform.thaw_aws()
    thawed_at = time.monotonic()
    print(f"moto frozen for {thawed_at - frozen_at:.1f}s")
    submitter.join(timeout=90 + FREEZE_SECONDS)
    assert not submitter.is_alive() and not errors, errors
    views = ledger.wait_final(ids + during, timeout=90 + FREEZE_SECONDS)
    answered = ", ".join(f"{ledger.submitted[j]['answered_s']:.1f}s" for j in during)
    print(f"all jobs final {time.monotonic() - thawed_at:.1f}s after SIGCONT; jobs submitted during the freeze "
          f"were answered after {answered}")
    for w in platform.workers:
        lines = w.process.log_path.read_text(errors="replace").splitlines()
        trouble = [ln for ln in lines if '"level": "WARNING"' in ln or '"level": "ERROR"' in ln]
        print(f"{w.name}: {len(trouble)} warnings/errors logged around the freeze")
        for line in trouble[:5]:
            print("   ", line[:300])
    report = ledger.report(ids + during)
    record(f"drill AWS endpoint frozen {FREEZE_SECONDS:g}s", report)
    assert_clean(report, submitted=10)
    assert all(v["status"] == "succeeded" for v in views.values())
    assert all(w.process.alive() for w in platform.workers), "an agent died during the freeze"
    assert platform.api.alive()


def test_api_create_retried_by_botocore_still_enqueues(tmp_path) -> None:
    """The freeze drill, longer than the API's read timeout: the API's own retry must not lose the job.

    In-process API with a 2 s read timeout (the Lambda's boto3 default is 60 s; a 70 s freeze of the whole
    platform shows the same, see GENAI_DRILL_FREEZE_SECONDS) and a 2.1 s freeze of moto during one submit.
    """
    import json

    import boto3
    from botocore.config import Config

    from fleetdev.local.platform import LocalOptions, LocalPlatform
    from runtime.api.app import Request
    from runtime.api.auth import generate_key
    from runtime.api.handler import ApiConfig, build_app

    platform = LocalPlatform(LocalOptions(run_dir=tmp_path / "aws"))
    try:
        platform.start_aws()
        res = platform.resources
        key, _ = generate_key("drill")
        config = Config(read_timeout=2, connect_timeout=2, retries={"max_attempts": 3, "mode": "standard"})

        def client(service: str):
            return boto3.client(service, endpoint_url=platform.moto_url, region_name="us-east-1",
                                aws_access_key_id="local", aws_secret_access_key="local", config=config)

        dynamodb = client("dynamodb")

        def hold_retries(request, **_) -> None:
            # A retry leaves a moment after the thaw, so that moto applies the timed-out first attempt
            # first (as DynamoDB would have, since it already had it): makes the drill deterministic.
            if "attempt=1" not in str(request.headers.get("amz-sdk-request", "attempt=1")):
                time.sleep(0.5)

        dynamodb.meta.events.register("before-send.dynamodb.TransactWriteItems", hold_retries)
        app = build_app(ApiConfig(job_table=res.job_table, queue_url=res.queue_url, api_keys=(key,),
                                  endpoint_url=platform.moto_url, region="us-east-1"),
                        clients={"dynamodb": dynamodb, "sqs": client("sqs")})
        body = json.dumps({"model": "sdxl-base-1.0", "inputs": {"prompt": "x", "width": 512, "height": 512}})
        request = Request("POST", "/v1/jobs", {"authorization": f"Bearer {key}", "idempotency-key": "first-and-only",
                                               "content-type": "application/json"}, body=body.encode())
        platform.freeze_aws()
        thaw = threading.Timer(2.1, platform.thaw_aws)  # just after the first attempt's 2 s read timeout
        thaw.start()
        try:
            response = app.handle(request)
        finally:
            thaw.join()
            platform.thaw_aws()
        assert response.status == 202, response.body
        waiting = platform.aws("sqs").get_queue_attributes(
            QueueUrl=res.queue_url, AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
        assert response.headers.get("Idempotent-Replayed") is None, "a first request was answered as a replay"
        assert int(waiting["ApproximateNumberOfMessages"]) == 1, "the accepted job was never enqueued"
    finally:
        platform.stop()
