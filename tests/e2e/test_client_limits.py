"""The client and the ``genai-fleet`` command against local mode's limits, and Ctrl-C (issue 39).

Local mode here has no workers (a job stays queued until canceled), a write rate of one request per
5 s per key with a burst of 1, and a daily quota of 1 job per key; each scenario has a key of its own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fleetdev.local.platform import LocalOptions, LocalPlatform
from genai_fleet_client import Client, QuotaExceededError, RateLimitedError
from runtime.api.auth import generate_key
from tests.e2e._helpers import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
MODEL = "sdxl-base-1.0"
KEYS = {name: generate_key(name)[0] for name in ("cli-rate", "client-rate", "cli-quota", "keep", "cancel")}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    options = LocalOptions(run_dir=tmp_path_factory.mktemp("limits"), workers=0, stop_grace_seconds=8, api_env={
        "GENAI_API_KEYS": ",".join(KEYS.values()), "GENAI_KEY_RATE_LIMIT": "0.2", "GENAI_KEY_BURST": "1",
        "GENAI_KEY_QUOTA_PER_DAY": "1"})
    with LocalPlatform(options) as started:
        yield started


def _env(platform: LocalPlatform, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENAI_FLEET_")}
    return {**env, "GENAI_FLEET_API_KEY": key, "GENAI_FLEET_API_URL": platform.api_url}


def _cli(platform: LocalPlatform, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "genai_fleet_client", *args], env=_env(platform, key),
                          capture_output=True, text=True, timeout=90)


def test_rate_limited_is_retried_after_retry_after_and_quota_is_reported_not_slept(platform):
    retried: list[tuple[str, float]] = []
    with Client(KEYS["client-rate"], platform.api_url, max_retry_wait_s=30,
                on_retry=lambda why, s: retried.append((why, s))) as client:
        client.submit(MODEL, {"prompt": "first"})  # takes the key's one token and its one job of the day
        with pytest.raises(QuotaExceededError) as quota:
            client.submit(MODEL, {"prompt": "second"})
    # The second create waited out the rate limit once (as the server's Retry-After said), then met the
    # quota, whose Retry-After (until midnight UTC) it reported instead of sleeping.
    assert len(retried) == 1 and "rate-limited" in retried[0][0] and 1 <= retried[0][1] <= 6
    assert quota.value.status == 429 and quota.value.retry_after and quota.value.retry_after >= 1
    assert quota.value.problem["type"].endswith("/quota-exceeded")

    with Client(KEYS["client-rate"], platform.api_url, max_retry_wait_s=0) as capped, \
            pytest.raises(RateLimitedError) as limited:
        capped.submit(MODEL, {"prompt": "third"})
    assert limited.value.retry_after and limited.value.type == "rate-limited"


def test_command_reports_rate_limit_past_its_cap_and_quota_at_once(platform):
    key = KEYS["cli-rate"]
    with Client(key, platform.api_url) as client:
        client.submit(MODEL, {"prompt": "takes the token"})
    refused = _cli(platform, key, "run", "--model", MODEL, "--prompt", "x", "--max-retry-wait", "0")
    assert refused.returncode == 3, refused.stderr
    assert "429 rate-limited" in refused.stderr and key not in refused.stderr

    key = KEYS["cli-quota"]
    with Client(key, platform.api_url) as client:
        client.submit(MODEL, {"prompt": "the day's one job"})
    quota = _cli(platform, key, "run", "--model", MODEL, "--prompt", "x", "--max-retry-wait", "30")
    assert quota.returncode == 3, quota.stderr
    assert "429 quota-exceeded" in quota.stderr and "daily quota" in quota.stderr
    assert quota.stderr.count("retrying") <= 1  # at most the rate limit's wait; never the quota's


def _interrupt(platform: LocalPlatform, key: str, tmp_path: Path, *flags: str) -> tuple[int, str, str]:
    err = tmp_path / f"stderr-{key[-8:]}"
    with err.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "genai_fleet_client", "run", "--model", MODEL, "--prompt",
                                 "never runs", *flags], env=_env(platform, key), stdout=subprocess.DEVNULL,
                                stderr=sink, text=True)
        try:
            line = wait_until(lambda: next((ln for ln in err.read_text().splitlines() if ": queued" in ln), None),
                              60, "the command to show the job queued")
            proc.send_signal(signal.SIGINT)
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    return code, line.split(":", 1)[0].strip(), err.read_text()


def test_ctrl_c_leaves_the_job_unless_cancel_on_interrupt(platform, tmp_path):
    code, job_id, stderr = _interrupt(platform, KEYS["keep"], tmp_path)
    assert code == 130, stderr
    assert "keeps running" in stderr and "--cancel-on-interrupt" in stderr and "?" not in stderr.splitlines()[-1]
    with Client(KEYS["keep"], platform.api_url) as client:
        assert client.get(job_id).status == "queued"

    code, job_id, stderr = _interrupt(platform, KEYS["cancel"], tmp_path, "--cancel-on-interrupt")
    assert code == 5, stderr
    assert f"job {job_id} canceled (--cancel-on-interrupt)" in stderr
    with Client(KEYS["cancel"], platform.api_url) as client:
        assert client.get(job_id).status == "canceled"
