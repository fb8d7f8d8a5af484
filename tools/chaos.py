"""``make chaos``: fault scenarios over local mode, audited from the local AWS's own state.

Each scenario starts local mode (moto, API, functions, workers with a supervisor that restarts any
worker that dies, as systemd's ``Restart=`` does), injects its fault by PID, and ends with a ledger
line and the audit of fleetdev.local.audit: every submitted job final exactly once (the table's stream
counts final writes), no output written after its job was final, no final record changed, the DLQ drained
with as many dead letters as the scenario means, plus the scenario's own checks. Loopback only,
every wait bounded; the whole run takes a few minutes on two cores.

    python tools/chaos.py              # every scenario
    python tools/chaos.py --only frozen-worker hanging-webhook
    python tools/chaos.py --list
"""

from __future__ import annotations

import argparse
import random
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from fleetdev.local.audit import Report
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
        r = self.report
        return not self.problems and r.lost == 0 and r.duplicated == 0 and not r.extra_jobs

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
    """A loopback webhook receiver; ``delay`` makes it hang before answering."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls: list[tuple[float, dict[str, str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                return None

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.calls.append((time.time(), dict(self.headers)))
                time.sleep(delay)
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


# What a scenario breaks; `make test` runs one scenario of each (tests/e2e/test_chaos.py checks the cover).
FAULT_CLASSES = {
    "process-death": "a worker killed (SIGKILL, OOM) mid-job",
    "spot-drain": "a spot notice: the worker drains and hands its job back",
    "frozen-process": "a worker stopped (SIGSTOP) past its lease, then woken",
    "aws-outage": "the local AWS frozen or a bucket gone while jobs run",
    "slow-receiver": "a webhook receiver that hangs",
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
    "kill9": Scenario(kill9, {"test_pattern_delay_seconds": 1.0}, fault="process-death"),
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
}


def run_scenario(name: str, run_dir: Path) -> Outcome:
    scenario = SCENARIOS[name]
    t0 = time.monotonic()
    options = LocalOptions(run_dir=run_dir, **{**FAST, **scenario.options})
    with LocalPlatform(options) as platform, Supervisor(platform) as sup:
        try:
            problems = scenario.run(platform, sup)
        except TimeoutError as exc:
            problems = [str(exc)]
        problems += judge_dead_letters(platform, scenario)
        report = platform.ledger.report()
    if report.failed != scenario.failed:
        problems.append(f"{report.failed} job(s) failed, the scenario expects {scenario.failed}")
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
    args = parser.parse_args(argv)
    if args.list:
        for name, sc in SCENARIOS.items():
            print(f"{name:24} {sc.run.__doc__.splitlines()[0]}")
        return 0
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="genai-chaos-") as tmp:
        for name in args.only or list(SCENARIOS):
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
