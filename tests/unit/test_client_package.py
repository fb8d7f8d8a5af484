"""The client package (issue 39) stands alone: it imports nothing of the server, and what it checks
agrees with what the server does (webhook signatures, error classes)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from genai_fleet_client import verify_webhook
from genai_fleet_client._protocol import Retrier, Settings, result
from genai_fleet_client.cli import EXIT_NETWORK, EXIT_REFUSED, exit_code
from genai_fleet_client.errors import QuotaExceededError, RateLimitedError, UnavailableError
from runtime.functions.webhooks import sign

SERVER_PACKAGES = ("runtime", "components", "fleetdev", "tools", "bench", "planner", "tests", "genai_policies",
                   "boto3", "botocore", "pulumi", "pulumi_aws")


def test_importing_the_client_and_its_command_loads_no_server_code():
    code = ("import sys, genai_fleet_client, genai_fleet_client.cli, genai_fleet_client.async_client; "
            f"print([m for m in sys.modules if m.split('.')[0] in {SERVER_PACKAGES!r}])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_verify_webhook_accepts_what_the_stack_signs_and_nothing_else():
    body, secret, now = b'{"event": "completed"}', b"s3cret", time.time()
    header = sign(secret, int(now), body)
    assert verify_webhook(secret, header, body)
    assert verify_webhook(secret.decode(), header, body)
    assert not verify_webhook(secret, header, body + b" ")
    assert not verify_webhook(b"other", header, body)
    assert not verify_webhook(secret, sign(secret, int(now) - 301, body), body)  # a replay
    assert not verify_webhook(secret, "v1=" + header.split("v1=")[1], body)   # no timestamp
    assert not verify_webhook(secret, "", body)


def _problem(status: int, slug: str) -> bytes:
    return json.dumps({"type": f"https://genai-fleet.dev/problems/{slug}", "title": "t", "status": status,
                       "detail": f"{slug} detail"}).encode()


def test_quota_is_raised_at_once_rate_limits_wait_up_to_the_cap():
    retrier = Retrier(Settings(base_url="http://x", api_key=None, max_retry_wait_s=3), clock=time.monotonic)
    with pytest.raises(QuotaExceededError) as quota:
        result(429, {"retry-after": "40000"}, _problem(429, "quota-exceeded"))
    patient = Retrier(Settings(base_url="http://x", api_key=None, max_retry_wait_s=10**6), clock=time.monotonic)
    with pytest.raises(QuotaExceededError):  # not slept, whatever the cap: it lasts until midnight UTC
        patient.after_api_error(quota.value)
    with pytest.raises(RateLimitedError) as limited:
        result(429, {"retry-after": "2"}, _problem(429, "rate-limited"))
    assert retrier.after_api_error(limited.value) == 2
    with pytest.raises(RateLimitedError):  # 2 s slept + 2 more would pass the cap of 3
        retrier.after_api_error(limited.value)
    assert exit_code(quota.value) == EXIT_REFUSED and exit_code(limited.value) == EXIT_REFUSED


def test_an_answer_without_a_problem_document_is_still_an_error_with_the_status():
    with pytest.raises(UnavailableError) as gateway:
        result(502, {}, b"<html>Bad Gateway</html>")
    assert gateway.value.status == 502 and "Bad Gateway" in str(gateway.value)
    assert exit_code(gateway.value) == EXIT_NETWORK
