"""Backend drills (issue 15): local mode (API, SQS on moto, real agent processes) with a slow fake ComfyUI
that behaves as the real one (history replaced only when a rerun ends, interrupts between nodes or at a
sampler step, targeted interrupts). Before the fix, each of these lost its job: the retry read the
previous attempt's history entry (an "interrupted" entry was taken for a hand-back, forever; an old node
error failed the retry while ComfyUI ran it), or a canceled job was submitted anyway.

1. A job past its time limit: the first attempt is interrupted at ``max_job_seconds``; the retry succeeds.
2. The agent restarted mid-job (systemd: SIGTERM then start; and a crash: SIGKILL then start, whose old
   prompt still runs in ComfyUI and is stopped by the new attempt).
3. Drain with two agents on one ComfyUI: the draining agent hands back and interrupts only its prompt;
   the other agent's attempt succeeds.
4. A node error, then a good retry.
5. Cancel requested while the backend uploads the job's input image: nothing is submitted to ComfyUI.

Each ends with the right final record, no record left "running", and prints a ledger line.
"""

from __future__ import annotations

import base64
import io
import threading
import time
import uuid
from pathlib import Path

import pytest
from PIL import Image

from runtime.jobs.store import FINAL
from tests.e2e._helpers import record, store, wait_until
from tests.fakes.fake_comfyui import FakeComfyUI

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def comfy(tmp_path: Path):
    """One fake ComfyUI (its root under tmp_path, as /opt/ComfyUI is on an instance). 2 s per prompt: longer
    than the adapter's first websocket wait, so a retry that could read its predecessor's entry would."""
    fake = FakeComfyUI(tmp_path / "comfy" / "models" / "checkpoints", delay=2.0, root=tmp_path / "comfy").start()
    yield fake
    fake.stop()


def start(start_platform, tmp_path: Path, comfy: FakeComfyUI, workers: int = 1, **options):
    checkpoint = tmp_path / "sdxl-base-1.0.safetensors"
    checkpoint.write_bytes(b"not really weights" * 1000)
    return start_platform(backend="comfyui", backend_url=comfy.url, workers=workers,
                          models={"sdxl-base-1.0": str(checkpoint)},
                          backend_model_dirs=[str(comfy.models_dir)] * workers, **options)


def prompts_of(comfy: FakeComfyUI, job_id: str) -> list[str]:
    return [p["prompt_id"] for p in list(comfy.prompts)
            if p["prompt_id"] == job_id or p["prompt_id"].startswith(f"{job_id}.")]


def running_prompt(comfy: FakeComfyUI) -> str | None:
    with comfy._cond:
        return comfy._running[1] if comfy._running else None


def finish(platform, title: str, ids: list[str], timeout: float = 90) -> dict[str, dict]:
    """Wait for every job to be final; print the ledger line; assert that no record is left running."""
    views = platform.ledger.wait_final(ids, timeout=timeout)
    report = platform.ledger.report(ids)
    record(title, report)
    s = store(platform)
    records = {j: s.get(j) for j in ids}
    assert not [j for j, r in records.items() if r["status"] not in FINAL], report.problems
    assert report.lost == 0 and report.duplicated == 0 and report.extra_jobs == 0, report.problems
    assert all(views[j]["status"] == records[j]["status"] for j in ids)
    return records


def test_job_past_its_time_limit_is_retried_and_succeeds(start_platform, tmp_path, comfy) -> None:
    platform = start(start_platform, tmp_path, comfy, worker_overrides={"max_job_seconds": 10})
    comfy.slow_runs, comfy.slow_seconds = 1, 60.0  # the first attempt's sampler would take a minute
    job_id = platform.ledger.submit(width=64, height=64)["id"]
    rec = finish(platform, "drill ComfyUI job past its time limit", [job_id])[job_id]
    assert rec["status"] == "succeeded" and rec["attempts"] == 2, rec
    assert "time limit" in rec["attempt_errors"][0]["message"], rec["attempt_errors"]
    first, second = prompts_of(comfy, job_id)
    assert comfy.outcomes[first] == "execution_interrupted" and comfy.outcomes[second] == "execution_success"
    assert second not in comfy.history and not list(comfy.output_dir.iterdir())  # the retry's files cleaned up


@pytest.mark.parametrize("how", ["sigterm", "sigkill"])
def test_agent_restarted_mid_job(start_platform, tmp_path, comfy, how: str) -> None:
    platform = start(start_platform, tmp_path, comfy, visibility_timeout_seconds=5)
    comfy.slow_runs, comfy.slow_seconds = 1, 60.0
    job_id = platform.ledger.submit(width=64, height=64)["id"]
    wait_until(lambda: running_prompt(comfy) in prompts_of(comfy, job_id), 30, "the first prompt running")
    worker = platform.workers[0].process
    if how == "sigterm":
        worker.stop(grace=15)  # systemd restart: stop (hands the job back, interrupts its prompt) ...
    else:
        worker.kill()  # ... or a crash: the prompt keeps running in ComfyUI, the message's lease runs out
    worker.start()
    rec = finish(platform, f"drill ComfyUI agent restarted mid-job ({how})", [job_id])[job_id]
    assert rec["status"] == "succeeded" and len(prompts_of(comfy, job_id)) == 2, rec
    if how == "sigterm":  # a stop hands the job back: the attempt is given back, the hand-back recorded
        assert rec["attempts"] == 1 and rec["handbacks"] == 1, rec
    else:  # a crash costs the attempt: the lease ran out and the next pick-up counted a new one
        assert rec["attempts"] == 2, rec
    first = prompts_of(comfy, job_id)[0]
    wait_until(lambda: first in comfy.outcomes, 30, "the first prompt to end")
    assert comfy.outcomes[first] == "execution_interrupted"


def test_drain_with_two_agents_on_one_comfyui(start_platform, tmp_path, comfy) -> None:
    platform = start(start_platform, tmp_path, comfy, workers=2, visibility_timeout_seconds=10)
    comfy.slow_runs, comfy.slow_seconds = 1, 60.0
    job_id = platform.ledger.submit(width=64, height=64)["id"]
    s = store(platform)
    owner = wait_until(lambda: (s.get(job_id) or {}).get("worker_id"), 30, "the job picked up")
    drained = next(w for w in platform.workers if w.instance_id == owner)
    wait_until(lambda: running_prompt(comfy) in prompts_of(comfy, job_id), 30, "its prompt running")
    drained.imds.set_spot_interruption(in_seconds=4)  # 4 s - 2 s margin: hand back at the cutoff
    others = platform.ledger.submit_batch(2, width=64, height=64)
    records = finish(platform, "drill ComfyUI drain, two agents on one backend", [job_id, *others])
    rec = records[job_id]
    assert rec["status"] == "succeeded" and rec["worker_id"] != owner, rec
    assert rec["attempts"] == 1 and rec["handbacks"] == 1, rec  # a drain is a hand-back, not a failed attempt
    assert all(records[j]["status"] == "succeeded" for j in others)
    assert f"job {job_id} handed back (drain" in drained.process.log_path.read_text()


def test_node_error_then_good_retry(start_platform, tmp_path, comfy) -> None:
    platform = start(start_platform, tmp_path, comfy)
    comfy.fail_executions = 1
    job_id = platform.ledger.submit(width=64, height=64)["id"]
    rec = finish(platform, "drill ComfyUI node error then good retry", [job_id])[job_id]
    assert rec["status"] == "succeeded" and rec["attempts"] == 2 and rec["outputs"], rec
    assert "illegal memory access" in rec["attempt_errors"][0]["message"]
    assert len(set(prompts_of(comfy, job_id))) == 2


def test_cancel_before_submit_submits_nothing(start_platform, tmp_path, comfy) -> None:
    platform = start(start_platform, tmp_path, comfy)
    gate = threading.Event()
    comfy.upload_gate = gate  # the agent's upload of the input image waits here
    buf = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(buf, format="PNG")
    body = {"model": "sdxl-base-1.0", "task": "img2img", "inputs": {
        "prompt": "x", "image": "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()}}
    http = platform.ledger.http
    answer = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code in (200, 202), answer.text
    job_id = answer.json()["id"]
    try:
        wait_until(lambda: ("POST", "/upload/image") in comfy.requests, 30, "the input upload to start")
        assert http.post(f"/v1/jobs/{job_id}/cancel").status_code in (200, 202)
    finally:
        gate.set()
    rec = finish(platform, "drill ComfyUI cancel before submit", [job_id])[job_id]
    assert rec["status"] == "canceled", rec
    time.sleep(0.5)
    assert prompts_of(comfy, job_id) == []  # ComfyUI never got the prompt
    assert not list(comfy.input_dir.iterdir())  # and the uploaded input is gone
