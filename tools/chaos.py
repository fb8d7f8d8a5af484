"""``make chaos``: fault scenarios over local mode, audited from the local AWS's own state.

Each scenario starts local mode (moto, API, functions, workers with a supervisor that restarts any
worker that dies, as systemd's ``Restart=`` does), injects its fault by PID, and ends with a ledger
line and the audit of fleetdev.local.audit: every submitted job final exactly once (the table's stream
counts final writes), no output written after its job was final, no final record changed, the DLQ drained
with as many dead letters as the scenario means, plus the scenario's own checks. Loopback only,
every wait bounded; the whole run takes a few minutes on two cores.

    python tools/chaos.py              # every scenario
    python tools/chaos.py --only frozen-worker hanging-webhook
    python tools/chaos.py --burners 2  # under load: two busy-loop processes for the whole run
    python tools/chaos.py --list

Issue 28 added the audit's end-state checks (no succeeded record pointing at an object that is not
live, no live output that no record references once the orphan sweeper ran) and six scenarios: a final
write that lands and then errors, worker clocks 90 s behind, a receiver answering 10 MB slowly, two agents
on one model cache folder, a burst of replayed submissions with workers killed, and workers killed between
their upload and their final write.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fleetdev.local.audit import Report
from fleetdev.local.ddb_fault_proxy import DynamoFaultProxy
from fleetdev.local.platform import LocalOptions, LocalPlatform
from runtime.jobs.store import JobStore

FAST = {"visibility_timeout_seconds": 3, "receive_wait_seconds": 1, "retry_delay_seconds": 1,
        "stale_lease_seconds": 6.0, "stop_grace_seconds": 5}


@dataclass
class Outcome:
    name: str
    report: Report
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.problems and self.report.clean

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        return f"chaos {self.name} [{verdict}, {self.seconds:.0f}s]: {self.report.line()}"


class Supervisor:
    """Restarts dead workers (systemd Restart=always); ``hold`` keeps a worker down on purpose."""

    def __init__(self, platform: LocalPlatform) -> None:
        self.platform, self.restarts, self.hold = platform, 0, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Supervisor:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            for w in list(self.platform.workers):
                if w.index not in self.hold and not w.process.alive():
                    self.platform.restart_worker(w.index)
                    self.restarts += 1


class Receiver:
    """A loopback webhook receiver; ``delay`` makes it hang before answering, ``reply`` writes its answer."""

    def __init__(self, delay: float = 0.0, reply: Callable[[BaseHTTPRequestHandler], None] | None = None) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append((time.time(), dict(self.headers)))
                time.sleep(delay)
                if reply is not None:
                    reply(self)
                    return
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def completed(self) -> dict[str, float]:
        return {h["Webhook-Id"].split(".")[0]: t for t, h in self.calls if h.get("Webhook-Event") == "completed"}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Burners:
    """N processes spinning a CPU each at normal priority while the run lasts (so "under load" is one thing)."""

    def __init__(self, count: int) -> None:
        self.count, self.procs = count, []

    def __enter__(self) -> Burners:
        self.procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(self.count)]
        if self.procs:
            print(f"chaos: {self.count} burner process(es) running: pids {[b.pid for b in self.procs]}", flush=True)
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


def _store(p: LocalPlatform) -> JobStore:
    return JobStore(p.resources.job_table, p.aws("dynamodb"))


def _wait(probe: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def _running_on(p: LocalPlatform, job_id: str) -> str | None:
    rec = _store(p).get(job_id)
    return rec.get("worker_id") if rec and rec["status"] == "running" else None


def _worker(p: LocalPlatform, instance_id: str) -> Any:
    return next(w for w in p.workers if w.instance_id == instance_id)


# -- scenarios ---------------------------------------------------------------------------------------
def kill9(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """Random SIGKILL of workers while a batch runs; the supervisor restarts them."""
    ids = p.ledger.submit_batch(12, width=64, height=64)
    rng, deadline = random.Random(7), time.monotonic() + 12
    kills = 0
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(1.5, 3.0))
        rng.choice(p.workers).process.kill()
        kills += 1
    p.ledger.wait_final(ids, timeout=90)
    return [] if kills and sup.restarts else [f"no kills ({kills}) or restarts ({sup.restarts})"]


def worker_killing_job(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """A job that kills every worker that runs it (an OOM kill): it must end failed, the rest succeed."""
    ids = p.ledger.submit_batch(4, width=64, height=64)
    poison = p.ledger.submit(prompt="poison", width=64, height=64)["id"]
    seen: set[int] = set()
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rec = _store(p).get(poison)
        if rec["status"] in ("succeeded", "failed", "canceled"):
            break
        # An OOM kill comes once the job runs on the backend: a claimed-ahead attempt is pending until then.
        began = rec.get("run_pending") != rec.get("lease")
        if rec["status"] == "running" and began and int(rec.get("lease") or 0) not in seen:
            seen.add(int(rec["lease"]))
            _worker(p, rec["worker_id"]).process.kill()
        time.sleep(0.05)
    views = p.ledger.wait_final([*ids, poison], timeout=60)
    problems = []
    if views[poison]["status"] != "failed":
        problems.append(f"poison job ended {views[poison]['status']}")
    if any(views[i]["status"] != "succeeded" for i in ids):
        problems.append("a job beside the poison job did not succeed")
    return problems


def spot_handbacks(p: LocalPlatform, sup: Supervisor, expect: str = "succeeded") -> list[str]:
    """The same job handed back by three spot notices in a row."""
    job = p.ledger.submit(prompt="long", width=64, height=64)["id"]
    for _ in range(3):
        instance = _wait(lambda: _running_on(p, job), 40, "the job to run")
        worker = _worker(p, instance)
        worker.imds.set_spot_interruption(in_seconds=1)
        _wait(lambda w=worker: not w.process.alive(), 30, "the worker to drain and exit")
        _wait(lambda gone=instance: _running_on(p, job) != gone, 30, "the job to leave the drained worker")
    view = p.ledger.wait_final([job], timeout=90)[job]
    rec = _store(p).get(job)
    problems = [] if view["status"] == expect else [f"job ended {view['status']}, expected {expect}"]
    if expect == "failed" and (rec.get("error") or {}).get("code") != "dead-lettered":
        problems.append(f"expected a dead-lettered failure, got {rec.get('error')}")
    if int(rec.get("handbacks") or 0) < 2:
        problems.append(f"hand-backs not recorded: {rec.get('handbacks')}")
    return problems


def spot_handbacks_to_dlq(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """With no hand-back allowance SQS dead-letters the job; the DLQ consumer must make it final."""
    return spot_handbacks(p, sup, expect="failed")


def aws_freeze_past_lease(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """The local AWS endpoint frozen (SIGSTOP) for three lease lengths while jobs run."""
    ids = p.ledger.submit_batch(6, width=64, height=64)
    _wait(lambda: any(_running_on(p, i) for i in ids), 30, "a job to run")
    p.freeze_aws()
    time.sleep(3 * p.options.visibility_timeout_seconds + 1)
    p.thaw_aws()
    views = p.ledger.wait_final(ids, timeout=120)
    problems = [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    if sup.restarts:  # invariant 5: a failing dependency never ends the agent process
        problems.append(f"an AWS outage restarted a worker {sup.restarts} time(s)")
    return problems


def frozen_worker(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """A worker frozen past its lease mid-job wakes after another finished the job: it must not write."""
    job = p.ledger.submit(prompt="frozen", width=64, height=64)["id"]
    instance = _wait(lambda: _running_on(p, job), 30, "the job to run")
    victim = _worker(p, instance)
    victim.process.signal(signal.SIGSTOP)
    try:
        view = p.ledger.wait_final([job], timeout=60)[job]
    finally:
        victim.process.signal(signal.SIGCONT)
    time.sleep(p.options.test_pattern_delay_seconds + 3)  # let the woken worker try to finish its attempt
    rec = _store(p).get(job)
    problems = [] if view["status"] == "succeeded" else [f"job ended {view['status']}"]
    if rec["worker_id"] == instance:
        problems.append("the frozen worker's attempt was recorded")
    woke = victim.process.log_path.read_text(errors="replace")
    if "lease lost" not in woke and "lost its lease" not in woke:
        problems.append("the woken worker never noticed that it lost its lease")
    return problems


def outputs_bucket_missing(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """S3 refuses every upload for a while (the outputs bucket is gone), then comes back."""
    s3, bucket = p.aws("s3"), p.resources.outputs_bucket
    s3.delete_bucket(Bucket=bucket)
    ids = p.ledger.submit_batch(4, width=64, height=64)
    time.sleep(6)
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    views = p.ledger.wait_final(ids, timeout=90)
    problems = [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    if sup.restarts:
        problems.append(f"an S3 outage restarted a worker {sup.restarts} time(s)")
    return problems


def hanging_webhook(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """A receiver that hangs must not delay another customer's webhooks, nor a worker's shutdown."""
    slow, healthy = Receiver(delay=20.0), Receiver()
    try:
        slow_ids = [p.ledger.submit(prompt=f"s{i}", width=64, height=64, webhook=slow.url,
                                    webhook_events=["start", "completed"])["id"] for i in range(4)]
        ok_ids = [p.ledger.submit(prompt=f"h{i}", width=64, height=64, webhook=healthy.url,
                                  webhook_events=["completed"])["id"] for i in range(4)]
        p.ledger.wait_final(slow_ids + ok_ids, timeout=60)
        _wait(lambda: set(ok_ids) <= set(healthy.completed()), 15, "the healthy receiver's webhooks")
        problems = []
        store = _store(p)
        for job_id, at in healthy.completed().items():
            lag = at - float(store.get(job_id)["completed_at"])
            if lag > 5.0:
                problems.append(f"{job_id}: 'completed' reached the healthy receiver {lag:.1f}s after the job ended")
        sup.hold.add(0)
        worker = p.workers[0]
        t0 = time.monotonic()
        worker.process.signal(signal.SIGTERM)
        _wait(lambda: not worker.process.alive(), 20, "the worker to stop")
        if time.monotonic() - t0 > 8:
            problems.append(f"worker took {time.monotonic() - t0:.1f}s to stop")
        return problems
    finally:
        slow.close()
        healthy.close()


# -- issue 28's scenarios -------------------------------------------------------------------------------
def _route_workers_dynamodb(p: LocalPlatform, url: str) -> None:
    """Point every agent's DynamoDB endpoint at ``url`` and restart it on that config."""
    for w in list(p.workers):
        doc = json.loads(w.config_path.read_text())
        doc["endpoints"]["dynamodb"] = url
        w.config_path.write_text(json.dumps(doc, indent=2) + "\n")
        p.restart_worker(w.index)
    for w in p.workers:
        _wait(lambda w=w: "backend ready" in w.process.log_path.read_text(errors="replace"), 40,
              f"{w.name} to restart on the proxy")


def final_write_applied_then_500(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """Every final write lands and is then answered 500 (botocore retries it): no output may be discarded."""
    proxy = DynamoFaultProxy(p.moto_url, "applied-then-500").start()
    try:
        _route_workers_dynamodb(p, proxy.url)
        ids = p.ledger.submit_batch(8, width=64, height=64)
        views = p.ledger.wait_final(ids, timeout=90)
    finally:
        proxy.stop()
    problems = [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    if proxy.faulted < len(ids):
        problems.append(f"only {proxy.faulted} of {len(ids)} final writes were faulted")
    return problems


def clock_skew(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """Every worker's clock 90 s behind (the sweeper's is right): jobs finish on their first attempt."""
    ids = p.ledger.submit_batch(6, width=64, height=64)
    views = p.ledger.wait_final(ids, timeout=90)
    store = _store(p)
    problems = [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    swept = [i for i in ids if any(e.get("code") == "lease-expired" for e in store.get(i).get("attempt_errors") or [])]
    if swept:
        problems.append(f"{len(swept)} job(s) had a live lease swept as expired: {swept[:3]}")
    if not any("behind AWS's" in w.process.log_path.read_text(errors="replace") for w in p.workers):
        problems.append("no worker reported its clock offset")
    return problems


def _trickle_ten_mb(handler: BaseHTTPRequestHandler) -> None:
    """Answer 200 with a 10 MB body, 64 KiB every 50 ms (about 8 s for the whole body)."""
    handler.send_response(200)
    handler.send_header("Content-Length", str(10 * 1024 * 1024))
    handler.end_headers()
    with contextlib.suppress(OSError):
        for _ in range(160):
            handler.wfile.write(b"x" * 65536)
            time.sleep(0.05)


def slow_big_webhook(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """A receiver that answers 10 MB slowly must not delay another receiver's webhooks."""
    slow, healthy = Receiver(reply=_trickle_ten_mb), Receiver()
    try:
        slow_ids = [p.ledger.submit(prompt=f"s{i}", width=64, height=64, webhook=slow.url,
                                    webhook_events=["start", "completed"])["id"] for i in range(12)]
        ok_ids = [p.ledger.submit(prompt=f"h{i}", width=64, height=64, webhook=healthy.url,
                                  webhook_events=["completed"])["id"] for i in range(6)]
        p.ledger.wait_final(slow_ids + ok_ids, timeout=90)
        _wait(lambda: set(ok_ids) <= set(healthy.completed()), 30, "the healthy receiver's webhooks")
        store, problems = _store(p), []
        for job_id, at in healthy.completed().items():
            lag = at - float(store.get(job_id)["completed_at"])
            if lag > 5.0:
                problems.append(f"{job_id}: 'completed' reached the healthy receiver {lag:.1f}s after the job ended")
        if not slow.calls:
            problems.append("the slow receiver was never called")
        return problems
    finally:
        slow.close()
        healthy.close()


def shared_model_cache(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """A second agent started on the first one's model cache folder must refuse with a clear error."""
    sup.hold.add(1)
    first, second = p.workers
    doc = json.loads(second.config_path.read_text())
    doc["model_cache"]["cache_dir"] = json.loads(first.config_path.read_text())["model_cache"]["cache_dir"]
    second.config_path.write_text(json.dumps(doc, indent=2) + "\n")
    second = p.restart_worker(1)
    _wait(lambda: not second.process.alive(), 40, "the second agent to refuse the shared folder")
    problems = []
    if "is in use by another agent" not in second.process.log_path.read_text(errors="replace"):
        problems.append(f"the second agent did not say why it stopped: {second.process.tail(3)}")
    ids = p.ledger.submit_batch(6, width=64, height=64)
    views = p.ledger.wait_final(ids, timeout=60)
    problems += [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    if ".part" in first.process.log_path.read_text(errors="replace"):
        problems.append("the first agent lost a download to the second")
    return problems


def replayed_burst_with_kills(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """60 jobs, each submitted twice at once under one Idempotency-Key (failing transactions beside other
    writes), a worker SIGKILLed every 3 s: every accepted job has a record and ends final once."""
    import uuid
    from concurrent.futures import ThreadPoolExecutor

    def twice(i: int) -> set[str]:
        key = uuid.uuid4().hex
        with ThreadPoolExecutor(2) as pair:
            views = list(pair.map(lambda _: p.ledger.submit(prompt=f"burst {i}", width=64, height=64, seed=i,
                                                            idempotency_key=key), range(2)))
        return {v["id"] for v in views}

    stop = threading.Event()

    def killer() -> None:
        rng = random.Random(28)
        while not stop.wait(3.0):
            rng.choice(p.workers).process.kill()

    threading.Thread(target=killer, daemon=True).start()
    try:
        with ThreadPoolExecutor(6) as pool:
            per_key = list(pool.map(twice, range(60)))
    finally:
        stop.set()
    problems = [f"one Idempotency-Key answered {len(ids)} job ids" for ids in per_key if len(ids) != 1]
    p.ledger.wait_final([i for ids in per_key for i in ids], timeout=150)
    return problems


def killed_after_upload(p: LocalPlatform, sup: Supervisor) -> list[str]:
    """Final writes held 3 s; each job's first attempt is SIGKILLed once its outputs are uploaded: the job
    succeeds on a later attempt and the killed attempt's objects are swept."""
    proxy = DynamoFaultProxy(p.moto_url, "hold", hold_s=3.0).start()
    s3, bucket = p.aws("s3"), p.resources.outputs_bucket
    try:
        _route_workers_dynamodb(p, proxy.url)
        ids = p.ledger.submit_batch(4, width=64, height=64)
        killed: set[str] = set()
        deadline = time.monotonic() + 60
        while len(killed) < len(ids) and time.monotonic() < deadline:
            for job in set(ids) - killed:
                rec = _store(p).get(job)
                if rec["status"] != "running":
                    continue
                prefix = f"outputs/{job}/{int(rec['lease'])}/"
                if s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("KeyCount", 0):
                    _worker(p, rec["worker_id"]).process.kill()
                    killed.add(job)
            time.sleep(0.1)
        views = p.ledger.wait_final(ids, timeout=120)
    finally:
        proxy.stop()
    problems = [f"{i} ended {v['status']}" for i, v in views.items() if v["status"] != "succeeded"]
    if len(killed) < len(ids) or not proxy.dropped:
        problems.append(f"killed {len(killed)} of {len(ids)} attempts after upload; {proxy.dropped} write(s) dropped")
    return problems
# What a scenario breaks; `make test` runs one scenario of each (tests/e2e/test_chaos.py checks the cover).
FAULT_CLASSES = {
    "process-death": "a worker killed (SIGKILL, OOM) mid-job",
    "spot-drain": "a spot notice: the worker drains and hands its job back",
    "frozen-process": "a worker stopped (SIGSTOP) past its lease, then woken",
    "aws-outage": "the local AWS frozen, failing after a write it applied, or a bucket gone while jobs run",
    "slow-receiver": "a webhook receiver that hangs, or answers a huge body slowly",
    "clock-skew": "the workers' clocks far behind AWS's",
    "shared-cache": "two agents started on one model cache folder",
}
DLQ_DRAIN_S = 15.0  # the DLQ consumer polls every second: a dead letter is reconciled and deleted well within this


@dataclass(frozen=True)
class Scenario:
    run: Callable[[LocalPlatform, Supervisor], list[str]]
    options: dict[str, Any]
    failed: int = 0  # jobs the scenario means to fail (a poison job); every other job must succeed
    fault: str = ""  # a key of FAULT_CLASSES
    dead_lettered: int = 0  # jobs the queue must dead-letter (each reconciled from the DLQ); -1: any number


SCENARIOS: dict[str, Scenario] = {
    # Like replayed-burst-with-kills below: late in the run only redelivered jobs are left, so a kill every 1.5-3 s
    # can land three times on one job's runs, which then fails attempts-exhausted, rightly (seen once: 11/12, 3
    # redeliveries); the scenario checks restarts, no loss and no duplicate, so its attempt limit is out of reach
    "kill9": Scenario(kill9, {"test_pattern_delay_seconds": 1.0, "max_receive_count": 10}, fault="process-death"),
    "worker-killing-job": Scenario(worker_killing_job, {"test_pattern_delay_seconds": 0.5}, failed=1,
                                   fault="process-death", dead_lettered=-1),
    "spot-handbacks": Scenario(spot_handbacks, {"test_pattern_delay_seconds": 4.0}, fault="spot-drain"),
    "spot-handbacks-to-dlq": Scenario(spot_handbacks_to_dlq, {"test_pattern_delay_seconds": 4.0,
                                                              "handback_allowance": 0}, failed=1,
                                      fault="spot-drain", dead_lettered=1),
    "aws-freeze-past-lease": Scenario(aws_freeze_past_lease, {"test_pattern_delay_seconds": 1.0}, fault="aws-outage"),
    "frozen-worker": Scenario(frozen_worker, {"test_pattern_delay_seconds": 2.0}, fault="frozen-process"),
    "outputs-bucket-missing": Scenario(outputs_bucket_missing, {"test_pattern_delay_seconds": 0.3},
                                       fault="aws-outage"),
    "hanging-webhook": Scenario(hanging_webhook, {"test_pattern_delay_seconds": 0.2}, fault="slow-receiver"),
    "final-write-applied-then-500": Scenario(final_write_applied_then_500, {"test_pattern_delay_seconds": 0.3},
                                             fault="aws-outage"),
    "clock-skew": Scenario(clock_skew, {"test_pattern_delay_seconds": 2.0,
                                        "worker_clock_offsets": {0: -90.0, 1: -90.0}}, fault="clock-skew"),
    "slow-big-webhook": Scenario(slow_big_webhook, {"test_pattern_delay_seconds": 0.2}, fault="slow-receiver"),
    "shared-model-cache": Scenario(shared_model_cache, {"test_pattern_delay_seconds": 0.3, "models": "checkpoint",
                                                        "worker_overrides": {"hot_models": ["sdxl-base-1.0"]}},
                                   fault="shared-cache"),
    # The scenario checks idempotency and one final write under kills, not the attempt limit: a job whose run
    # three random kills land on fails attempts-exhausted, rightly (seen once in `make chaos` under load), so the
    # limit is raised beyond what a kill every 3 s during the submissions can reach
    "replayed-burst-with-kills": Scenario(replayed_burst_with_kills, {"test_pattern_delay_seconds": 0.5,
                                                                      "max_receive_count": 10},
                                          fault="process-death"),
    "killed-after-upload": Scenario(killed_after_upload, {"test_pattern_delay_seconds": 0.5},
                                    fault="process-death"),
}
ISSUE_28 = ("final-write-applied-then-500", "clock-skew", "slow-big-webhook", "shared-model-cache",
            "replayed-burst-with-kills", "killed-after-upload")


def _options(scenario: Scenario, run_dir: Path) -> dict[str, Any]:
    options = {**FAST, **scenario.options}
    if options.get("models") == "checkpoint":  # a small checkpoint in the model store (the real upload path)
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint = run_dir / "sdxl-base-1.0.safetensors"
        checkpoint.write_bytes(b"not really weights" * 50_000)
        options["models"] = {"sdxl-base-1.0": str(checkpoint)}
    return options


def _settled_report(platform: LocalPlatform, within_s: float = 15.0) -> Report:
    """The audit once the orphan sweeper had its chance (it runs off the table's stream, a moment late)."""
    deadline = time.monotonic() + within_s
    report = platform.ledger.report()
    while report.orphans and time.monotonic() < deadline:
        time.sleep(1.0)
        report = platform.ledger.report()
    return report


def _failures(records: list[dict[str, Any]]) -> list[str]:
    """Each failed job's error and attempt history, so a failed run says why without its logs."""
    out = []
    for r in records:
        if r.get("status") == "failed":
            error = r.get("error") or {}
            out.append(f"  {r.get('job_id')}: {error.get('code')}: {str(error.get('message'))[:300]} "
                       f"(attempts {r.get('attempts')}, handbacks {r.get('handbacks', 0)})")
    return out


def run_scenario(name: str, run_dir: Path) -> Outcome:
    scenario = SCENARIOS[name]
    t0 = time.monotonic()
    options = LocalOptions(run_dir=run_dir, **_options(scenario, run_dir))
    with LocalPlatform(options) as platform, Supervisor(platform) as sup:
        try:
            problems = scenario.run(platform, sup)
        except TimeoutError as exc:
            problems = [str(exc)]
        problems += judge_dead_letters(platform, scenario)
        report = _settled_report(platform)
        platform_records = [_store(platform).get(i) or {} for i in platform.ledger.submitted]
    if report.failed != scenario.failed:
        problems.append(f"{report.failed} job(s) failed, the scenario expects {scenario.failed}")
        problems += _failures(platform_records)
    if report.succeeded + report.failed + report.canceled != report.submitted:
        problems.append("not every submitted job is final")
    return Outcome(name, report, problems + report.problems, time.monotonic() - t0)


def judge_dead_letters(p: LocalPlatform, scenario: Scenario) -> list[str]:
    """The DLQ per scenario: drained to zero within DLQ_DRAIN_S (every dead letter reconciled and deleted by
    its consumer), and as many jobs failed ``dead-lettered`` as the scenario means (-1: any number)."""
    depth = p.ledger.dlq_depth()
    deadline = time.monotonic() + DLQ_DRAIN_S
    while depth and time.monotonic() < deadline:
        time.sleep(0.2)
        depth = p.ledger.dlq_depth()
    problems = [] if not depth else [f"the DLQ still holds {depth} message(s) {DLQ_DRAIN_S:.0f}s after the run"]
    if scenario.dead_lettered >= 0:
        store = _store(p)
        records = [store.get(i) or {} for i in p.ledger.submitted]
        lettered = sum((r.get("error") or {}).get("code") == "dead-lettered" for r in records)
        if lettered != scenario.dead_lettered:
            problems.append(f"{lettered} job(s) dead-lettered, the scenario expects {scenario.dead_lettered}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(SCENARIOS), help="run these scenarios only")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--issue-28", action="store_true", help="run the scenarios issue 28 added")
    parser.add_argument("--burners", type=int, default=0, metavar="N",
                        help="N busy-loop processes at normal priority for the whole run ('under load')")
    args = parser.parse_args(argv)
    if args.list:
        for name, sc in SCENARIOS.items():
            print(f"{name:30} {sc.run.__doc__.splitlines()[0]}")
        return 0
    if args.burners < 0:
        parser.error("--burners: give 0 or more busy-loop processes")
    outcomes = []
    names = args.only or (list(ISSUE_28) if args.issue_28 else list(SCENARIOS))
    with tempfile.TemporaryDirectory(prefix="genai-chaos-") as tmp, Burners(args.burners):
        for name in names:
            outcome = run_scenario(name, Path(tmp) / name)
            outcomes.append(outcome)
            print(outcome.line(), flush=True)
            for problem in outcome.problems:
                print(f"  {problem}", flush=True)
    failed = [o.name for o in outcomes if not o.passed]
    print(f"chaos: {len(outcomes) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
