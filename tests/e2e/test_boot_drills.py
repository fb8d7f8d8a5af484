"""Boot and lifecycle drills over local mode (issue 12). Each prints its ledger line.

1. The webhook secret parameter does not exist (the README creates it after ``pulumi up``): the agent
   warns, counts ``BootWarnings``, completes the launching action with CONTINUE and serves jobs.
2. A hot model is not in the model store yet: the same, jobs with uploaded models succeed.
3. A rebalance recommendation reaches one agent mid-batch: it keeps pulling and finishing jobs, and
   completes no terminating action (capacity rebalancing replaces it; the drain starts on the
   terminating hook or the spot notice).
4. A fatal boot error (the backend never answers): the agent exits non-zero at once after completing
   the launching action with ABANDON; ``genai-worker mark-unhealthy`` (the unit's OnFailure=) marks the
   instance Unhealthy. The systemd side of the crash loop runs in the first-boot rehearsal
   (tests/rehearsal/).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runtime.worker.aws import RecordingAutoScaling
from tests.e2e._helpers import assert_clean, record, store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def _launching(platform, worker) -> list[str]:
    calls = RecordingAutoScaling.read(worker.autoscaling_log)
    return [c["result"] for c in calls if c["op"] == "complete_lifecycle_action"
            and c["hook"] == f"{platform.options.prefix}-launching"]


def _log(worker) -> list[dict]:
    lines = worker.process.log_path.read_text(errors="replace").splitlines()
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def test_no_webhook_secret_on_the_worker_at_all(start_platform) -> None:
    """The worker needs no webhook secret (the stack's webhook functions sign and send): its config has none,
    it reads none, it boots and works. The missing-secret case is the preview's (components/prerequisites.py)."""
    platform = start_platform(workers=1)
    (w0,) = platform.workers
    assert not [k for k in json.loads(w0.config_path.read_text()) if "webhook" in k]
    ids = platform.ledger.submit_batch(3)
    platform.ledger.wait_final(ids, timeout=60)
    report = platform.ledger.report(ids)
    record("drill worker without a webhook secret", report)
    assert_clean(report, submitted=3)
    assert _launching(platform, w0) == ["CONTINUE"]
    assert w0.process.alive()


def test_missing_hot_model_is_a_warning(start_platform, tmp_path) -> None:
    checkpoint = tmp_path / "sd15.safetensors"
    checkpoint.write_bytes(b"weights" * 64)
    platform = start_platform(workers=1, models={"sd15": str(checkpoint)},
                              worker_overrides={"hot_models": ["sd15", "not-uploaded-yet"]})
    (w0,) = platform.workers
    ids = platform.ledger.submit_batch(3)
    platform.ledger.wait_final(ids, timeout=60)
    report = platform.ledger.report(ids)
    record("drill missing hot model", report)
    assert_clean(report, submitted=3)
    assert _launching(platform, w0) == ["CONTINUE"]
    warnings = [r for r in _log(w0) if r.get("message", "").startswith("hot model not-uploaded-yet not preloaded")]
    assert warnings and warnings[0]["level"] == "WARNING"


def test_rebalance_recommendation_keeps_the_agent_working(start_platform) -> None:
    platform = start_platform(workers=1, test_pattern_delay_seconds=0.5)
    (w0,) = platform.workers
    first = platform.ledger.submit_batch(2)
    platform.ledger.wait_final(first, timeout=60)
    w0.imds.set_rebalance()
    wait_until(lambda: any("rebalance recommendation" in r.get("message", "") for r in _log(w0)), 20,
               "the agent to see the rebalance recommendation")
    noticed = time.time()
    second = platform.ledger.submit_batch(4)
    views = platform.ledger.wait_final(second, timeout=60)
    report = platform.ledger.report(first + second)
    record("drill rebalance recommendation", report)
    assert_clean(report, submitted=6)
    assert all(v["status"] == "succeeded" for v in views.values())
    s = store(platform)
    for job_id in second:
        rec = s.get(job_id)
        assert rec["worker_id"] == w0.instance_id
        assert float(rec.get("last_started_at") or rec["started_at"]) >= noticed - 1
    assert w0.process.alive()
    calls = RecordingAutoScaling.read(w0.autoscaling_log)
    assert not [c for c in calls if c["op"] == "complete_lifecycle_action"
                and c["hook"] == f"{platform.options.prefix}-terminating"], calls


def test_fatal_boot_abandons_the_launch_and_marks_the_instance_unhealthy(start_platform, tmp_path) -> None:
    platform = start_platform(workers=1)
    (w0,) = platform.workers
    ids = platform.ledger.submit_batch(2)
    platform.ledger.wait_final(ids, timeout=60)
    config = json.loads(w0.config_path.read_text())
    calls_file = tmp_path / "broken-autoscaling.jsonl"
    config.update({"backend": "comfyui", "backend_url": "http://127.0.0.1:9", "backend_model_dir": str(tmp_path),
                   "backend_ready_timeout_seconds": 2, "worker_id": "i-0broken000000000",
                   "endpoints": {**config["endpoints"], "autoscaling": f"record:{calls_file}"}})
    config["lifecycle"]["imds_enabled"] = False
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(config))
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "runtime.worker", "run", "--config", str(broken)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert time.monotonic() - started < 60  # the backend timeout, not the lifecycle hook's
    calls = RecordingAutoScaling.read(calls_file)
    assert [c["result"] for c in calls if c["op"] == "complete_lifecycle_action"] == ["ABANDON"]
    sick = subprocess.run([sys.executable, "-m", "runtime.worker", "mark-unhealthy", "--config", str(broken)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert sick.returncode == 0, sick.stderr[-2000:]
    calls = RecordingAutoScaling.read(calls_file)
    assert [c for c in calls if c["op"] == "set_instance_health" and c["healthy"] is False], calls
    report = platform.ledger.report(ids)
    record("drill fatal boot error (instance abandoned, marked unhealthy)", report)
    assert_clean(report, submitted=2)
