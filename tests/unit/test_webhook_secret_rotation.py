"""Issue 43, item 4: rotating the webhook secret without downtime. The whole sequence is drilled against moto:
`genai-stack webhook-secret --rotate` puts a new secret beside the old, the sender function (re-reading the
parameter) signs every delivery with both, receivers holding only the old and only the new secret both verify (with
the server's verifier, the client package's and the one docs/api.md prints), and `--finish-rotation` drops the old.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import httpx
import pytest
from moto import mock_aws

from genai_fleet_client import verify_webhook
from runtime.functions import webhook_dispatch
from runtime.functions.webhooks import WebhookSender, load_secret_from_ssm, parse_secrets, sign, verify_signature
from tools import stack_setup

ROOT = Path(__file__).resolve().parents[2]
NOW = 1_767_225_600
PARAMETER = "/genai-fleet/dev/webhook-secret"


def _documented_verifier():
    """The standard-library verifier docs/api.md prints for receivers, as printed."""
    text = (ROOT / "docs" / "api.md").read_text()
    code = re.search(r"### Verifying a webhook.*?```python\n(.*?)```", text, re.S).group(1)
    scope: dict = {}
    exec(compile(code, "docs/api.md", "exec"), scope)  # the documented snippet, run as written
    return scope["verify"]


def _verifiers():
    documented = _documented_verifier()
    return {"server": lambda s, h, b: verify_signature(s, h, b, now=NOW),
            "client": lambda s, h, b: verify_webhook(s, h, b, now=NOW),
            "docs": lambda s, h, b: documented(s, h, b, tolerance_s=10**10)}


def _delivered_header(secret_value: str) -> tuple[str, bytes]:
    """What a receiver gets from a sender holding ``secret_value`` (the parameter's value)."""
    seen = []

    def receiver(request: httpx.Request) -> httpx.Response:
        seen.append((request.headers["Webhook-Signature"], request.content))
        return httpx.Response(204)

    sender = WebhookSender(secret_value, resolver=lambda host, port: ["93.184.216.34"],
                           transport=httpx.MockTransport(receiver), clock=lambda: NOW)
    assert sender.send("https://hooks.example.com/h", "completed", {"id": "j1", "status": "succeeded"}).delivered
    return seen[0]


@pytest.fixture
def ssm(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield boto3.client("ssm", region_name="us-east-1")


def _stored(ssm) -> str:
    return load_secret_from_ssm(ssm, PARAMETER).decode()


def test_receivers_with_only_the_old_or_only_the_new_secret_both_verify_during_a_rotation(ssm):
    cfg = stack_setup.stack_settings("dev")
    stack_setup.ensure_webhook_secret(ssm, cfg)
    old = _stored(ssm)
    started = stack_setup.ensure_webhook_secret(ssm, cfg, rotate=True)
    assert started["rotated"] and started["active_secrets"] == 2
    new, kept = _stored(ssm).split(",")
    assert kept == old and new != old and len(bytes.fromhex(new)) == 32
    header, body = _delivered_header(_stored(ssm))
    assert header.count("v1=") == 2
    for name, verify in _verifiers().items():
        assert verify(old.encode(), header, body), f"{name}: a receiver still on the old secret"
        assert verify(new.encode(), header, body), f"{name}: a receiver already on the new secret"
        assert not verify(b"a secret never issued", header, body), name
        assert not verify(old.encode(), header, body + b" "), name
    with pytest.raises(stack_setup.SetupError, match="mid-rotation"):
        stack_setup.ensure_webhook_secret(ssm, cfg, rotate=True)
    finished = stack_setup.ensure_webhook_secret(ssm, cfg, finish_rotation=True)
    assert finished["active_secrets"] == 1 and _stored(ssm) == new
    header, body = _delivered_header(_stored(ssm))
    assert verify_signature(new.encode(), header, body, now=NOW)
    assert not verify_signature(old.encode(), header, body, now=NOW)  # the old secret is retired
    with pytest.raises(stack_setup.SetupError, match="no rotation to finish"):
        stack_setup.ensure_webhook_secret(ssm, cfg, finish_rotation=True)


def test_a_warm_sender_function_picks_up_each_rotation_step_within_the_refresh(monkeypatch):
    monkeypatch.setattr(webhook_dispatch, "_cached", {})
    monkeypatch.setenv("GENAI_WEBHOOK_QUEUE_URL", "http://127.0.0.1:5000/q")
    monkeypatch.setenv("GENAI_WEBHOOK_SECRET", "old")
    monkeypatch.setattr(webhook_dispatch.environment, "client", lambda service: object())
    now = [100.0]
    webhook_dispatch.sender_handler({"Records": []}, clock=lambda: now[0])
    sender = webhook_dispatch._cached["sender"].sender
    monkeypatch.setenv("GENAI_WEBHOOK_SECRET", "new,old")
    now[0] += webhook_dispatch.SECRET_REFRESH_S - 1
    webhook_dispatch.sender_handler({"Records": []}, clock=lambda: now[0])
    assert sender.signature(NOW, b"x") == sign("old", NOW, b"x")  # still the cached secret
    now[0] += 1
    webhook_dispatch.sender_handler({"Records": []}, clock=lambda: now[0])
    assert webhook_dispatch._cached["sender"].sender is sender
    assert sender.signature(NOW, b"x") == sign("new,old", NOW, b"x")


@pytest.mark.parametrize("value, error", [("", "required"), ("a,", "empty"), ("a,b,c", "at most 2")])
def test_a_bad_secret_value_is_refused_naming_what_to_change(value, error):
    with pytest.raises(ValueError, match=error):
        parse_secrets(value)


def test_the_signature_header_lists_one_v1_per_secret_new_first():
    header = sign("new,old", NOW, b"{}")
    t, first, second = header.split(",")
    assert t == f"t={NOW}" and first == sign("new", NOW, b"{}").split(",")[1]
    assert second == sign("old", NOW, b"{}").split(",")[1]
    assert json.dumps(header)  # plain ASCII
