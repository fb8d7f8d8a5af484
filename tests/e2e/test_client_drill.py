"""A worker killed mid-job (SIGKILL) under the ``genai-fleet`` command and under the Python client: the
progress moves again after the hand-back and the output arrives (issue 39's "done when").

Workers do not report steps yet (issue 38), so the bar's steps are the job's phases and attempts; the
30 steps are the job's own input. The test-pattern backend stands in for inference (5 s per image).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading

import pytest

from genai_fleet_client import Client
from genai_fleet_client.types import Job
from tests.e2e._helpers import store, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "sdxl-base-1.0"


def _kill_worker_running(platform, job_id: str) -> str:
    worker_id = wait_until(lambda: (store(platform).get(job_id) or {}).get("worker_id"), 20, "the job's worker")
    victim = next(w for w in platform.workers if w.instance_id == worker_id)
    victim.process.kill()  # SIGKILL: no hand-back; the job's lease has to run out
    return worker_id


def test_killed_worker_bar_moves_again_and_the_output_is_written(start_platform, tmp_path):
    platform = start_platform(workers=2, test_pattern_delay_seconds=5.0, visibility_timeout_seconds=4)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("GENAI_FLEET_")},
           "GENAI_FLEET_API_KEY": platform.api_key, "GENAI_FLEET_API_URL": platform.api_url}
    err = tmp_path / "stderr"
    with err.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "genai_fleet_client", "run", "--model", MODEL, "--prompt",
                                 "a lighthouse", "--steps", "30", "--width", "64", "--height", "64", "-o",
                                 str(tmp_path / "out")], env=env, stdout=subprocess.PIPE, stderr=sink, text=True)
        try:
            line = wait_until(lambda: next((ln for ln in err.read_text().splitlines()
                                            if ln.endswith(": running (attempt 1)")), None), 30, "attempt 1 running")
            killed = _kill_worker_running(platform, line.split(":", 1)[0])
            out, _ = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = err.read_text()
    assert proc.returncode == 0, stderr
    lines = [ln for ln in stderr.splitlines() if re.match(r"^j_[0-9A-Z]+: ", ln)]  # the bar's change lines
    first = lines.index(next(ln for ln in lines if ln.endswith(": running (attempt 1)")))
    again = [ln for ln in lines[first + 1:] if ln.endswith(": running (attempt 2)")]
    assert again, lines  # after the hand-back the bar's line moved on: attempt 2 runs
    assert lines[-1].endswith(": succeeded") and "3/3 phases" in stderr
    assert (tmp_path / "out").is_dir() and out.split()[0].endswith(".png")

    # The same through the Python client: a fresh worker joins, and the one running the job is killed.
    platform.add_worker()
    seen: list[tuple[str, int]] = []
    ids: set[str] = set()
    result: dict[str, Job] = {}
    with Client(platform.api_key, platform.api_url, poll_interval_s=0.25) as client:
        runner = threading.Thread(target=lambda: result.update(job=client.run(
            MODEL, {"prompt": "again", "steps": 30, "width": 64, "height": 64},
            on_update=lambda j: (ids.add(j.id), seen.append((j.status, j.attempts))))), daemon=True)
        runner.start()
        wait_until(lambda: ("running", 1) in seen, 30, "the client to see attempt 1 running")
        assert len(ids) == 1 and _kill_worker_running(platform, next(iter(ids))) != killed
        runner.join(timeout=120)
        assert "job" in result, seen
        paths = client.download(result["job"], tmp_path / "py")
    assert result["job"].status == "succeeded" and result["job"].attempts >= 2 and paths
    assert seen.index(("running", 1)) < seen.index(next(s for s in seen if s[1] >= 2))
    assert seen[-1][0] == "succeeded"
