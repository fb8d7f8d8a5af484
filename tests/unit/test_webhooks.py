"""Webhook signing, retries with backoff, event filtering and SSRF refusal (no real network)."""

from __future__ import annotations

import json

import httpx
import pytest

from runtime.functions.webhooks import WebhookSender, sign, verify_signature
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.store import new_record

LINKS = OutputLinks("https://cdn.example.com")  # public links (issue 43: made at send time)

SECRET = b"s3cret"
PUBLIC = {"hooks.example.com": ["93.184.216.34"]}


def _resolver(host, port):
    return PUBLIC.get(host, ["10.0.0.5"])


def _sender(handler, **kwargs):
    delays = []
    sender = WebhookSender(SECRET, resolver=_resolver, transport=httpx.MockTransport(handler), sleep=delays.append,
                           rng=lambda: 0.5, clock=lambda: 1_700_000_000, **kwargs)
    return sender, delays


def test_sign_and_verify():
    body = b'{"a":1}'
    header = sign(SECRET, 1_700_000_000, body)
    assert header.startswith("t=1700000000,v1=")
    assert verify_signature(SECRET, header, body, now=1_700_000_010)
    assert not verify_signature(SECRET, header, body + b" ", now=1_700_000_010)
    assert not verify_signature(b"other", header, body, now=1_700_000_010)
    assert not verify_signature(SECRET, header, body, now=1_700_001_000)  # too old
    assert not verify_signature(SECRET, "garbage", body)


def test_delivery_is_signed_and_pinned():
    seen = []

    def handler(request: httpx.Request):
        seen.append(request)
        return httpx.Response(204)

    sender, _ = _sender(handler)
    result = sender.send("https://hooks.example.com/h?token=x", "completed", {"id": "j_1", "status": "succeeded"})
    assert result.delivered and result.attempts == 1
    req = seen[0]
    assert req.url.host == "93.184.216.34" and req.headers["host"] == "hooks.example.com"
    assert req.extensions.get("sni_hostname") == "hooks.example.com"
    assert verify_signature(SECRET, req.headers["webhook-signature"], req.content, now=1_700_000_000)
    assert req.headers["webhook-event"] == "completed" and req.headers["webhook-id"] == "j_1.completed"
    assert json.loads(req.content)["job"]["status"] == "succeeded"


def test_retries_with_exponential_backoff_then_succeeds():
    answers = iter([httpx.Response(503), httpx.Response(500), httpx.Response(200)])
    sender, delays = _sender(lambda r: next(answers), base_delay_s=1.0)
    result = sender.send("https://hooks.example.com/h", "start", {"id": "j_1"})
    assert result.delivered and result.attempts == 3
    assert delays == [0.75, 1.5]  # equal jitter with rng=0.5: ceiling*0.75, ceiling doubling


def test_network_errors_retry_and_give_up_bounded():
    def handler(request):
        raise httpx.ConnectError("refused")

    sender, delays = _sender(handler, max_attempts=4, base_delay_s=1.0, max_delay_s=2.0)
    result = sender.send("https://hooks.example.com/h", "completed", {"id": "j_1"})
    assert not result.delivered and result.attempts == 4 and "ConnectError" in result.error
    assert delays == [0.75, 1.5, 1.5]  # capped at max_delay_s


def test_client_errors_and_redirects_are_final():
    sender, delays = _sender(lambda r: httpx.Response(400))
    assert sender.send("https://hooks.example.com/h", "completed", {"id": "j"}).attempts == 1
    assert delays == []
    sender, _ = _sender(lambda r: httpx.Response(302, headers={"Location": "http://169.254.169.254/"}))
    result = sender.send("https://hooks.example.com/h", "completed", {"id": "j"})
    assert not result.delivered and result.status_code == 302 and result.attempts == 1


def test_retry_after_is_honoured_up_to_cap():
    answers = iter([httpx.Response(429, headers={"Retry-After": "7"}), httpx.Response(200)])
    sender, delays = _sender(lambda r: next(answers), max_delay_s=5.0)
    assert sender.send("https://hooks.example.com/h", "completed", {"id": "j"}).delivered
    assert delays == [5.0]


@pytest.mark.parametrize("url", ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/",
                                 "https://internal.example.org/x", "http://[::ffff:10.0.0.1]/"])
def test_ssrf_targets_are_never_contacted(url):
    calls = []
    sender, delays = _sender(lambda r: calls.append(r) or httpx.Response(200))
    result = sender.send(url, "completed", {"id": "j"})
    assert not result.delivered and result.error.startswith("refused") and result.attempts == 1
    assert calls == [] and delays == []


def test_notify_respects_event_filter():
    calls = []
    sender, _ = _sender(lambda r: calls.append(r) or httpx.Response(200))
    spec = {"model": "m", "task": "txt2img", "inputs": {}, "webhook": "https://hooks.example.com/h",
            "webhook_events_filter": ["completed"]}
    record = new_record(spec, owner="k1", now=1_700_000_000)
    assert sender.notify(record, "start", LINKS) is None
    assert sender.notify(record, "completed", LINKS).delivered
    assert json.loads(calls[0].content)["job"]["id"] == record["job_id"]
    no_hook = new_record({**spec, "webhook": None}, owner="k1")
    assert sender.notify(no_hook, "completed", LINKS) is None


def test_secret_required():
    with pytest.raises(ValueError):
        WebhookSender(b"")
