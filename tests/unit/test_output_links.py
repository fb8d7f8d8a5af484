"""Output links (issue 43): records hold object keys; every hand-out makes the URL (runtime/jobs/output_links.py)."""

from __future__ import annotations

import json

import pytest

from runtime.functions.webhook_dispatch import SenderHandler
from runtime.functions.webhook_events import Delivery, deliveries
from runtime.jobs.events import FINAL_CURSOR, events_after
from runtime.jobs.output_links import OutputLinks, output_key
from runtime.jobs.store import new_record, serialize
from runtime.jobs.views import public_view

CDN = "https://d111.cloudfront.net"
KEY = "outputs/j_01/3/image-0.png"
SPEC = {"model": "m", "task": "txt2img", "inputs": {"prompt": "x"}, "webhook": "https://hooks.example.com/h",
        "webhook_events_filter": ["completed"]}


class ClockSigner:
    """Stands in for the CDN signer: records the expiry it was asked for in the URL it returns."""

    def sign(self, url: str, expires_at: int) -> str:
        return f"{url}?Expires={expires_at}"


def record(outputs: list[dict]) -> dict:
    return {**new_record(SPEC, owner="k", now=1000.0, job_id="j_01"), "status": "succeeded", "completed_at": 1003.0,
            "updated_at": 1003.0, "outputs": outputs}


def test_a_link_is_the_cdn_and_the_key_public_or_signed_to_expire_ttl_from_now():
    now = [5000.0]
    assert OutputLinks(CDN + "/").url(KEY) == f"{CDN}/{KEY}"
    signed = OutputLinks(CDN, ClockSigner(), ttl_s=600, clock=lambda: now[0])
    assert signed.url(KEY) == f"{CDN}/{KEY}?Expires=5600"
    now[0] = 9000.0
    assert signed.url(KEY) == f"{CDN}/{KEY}?Expires=9600"  # made when handed out, not once
    with pytest.raises(ValueError, match="positive"):
        OutputLinks(CDN, ttl_s=0)


def test_records_from_before_issue_43_keep_working_their_key_read_from_the_stored_url():
    assert output_key({"key": KEY, "url": "https://old/x.png"}) == KEY
    assert output_key({"url": f"https://old-cdn.example.com/{KEY}"}) == KEY
    assert output_key({}) is None
    links = OutputLinks(CDN)
    old = public_view(record([{"url": f"https://old-cdn.example.com/{KEY}", "content_type": "image/png"}]), "",
                      links)
    new = public_view(record([{"key": KEY, "content_type": "image/png"}]), "", links)
    assert old["outputs"] == new["outputs"] == [{"url": f"{CDN}/{KEY}", "content_type": "image/png",
                                                 "generator": None}]


def test_the_view_carries_urls_never_keys_and_the_events_final_status_too():
    links = OutputLinks(CDN, ClockSigner(), ttl_s=60, clock=lambda: 100.0)
    done = record([{"key": KEY, "content_type": "image/png", "generator": "test-pattern"}])
    view = public_view(done, "https://api", links)
    assert view["outputs"] == [{"url": f"{CDN}/{KEY}?Expires=160", "content_type": "image/png",
                                "generator": "test-pattern"}]
    final = events_after(done, [], "000001.000000", links)
    assert final[-1]["cursor"] == FINAL_CURSOR and final[-1]["outputs"] == [f"{CDN}/{KEY}?Expires=160"]


def _image(rec: dict) -> dict:
    item = dict(rec, pk=f"job#{rec['job_id']}", spec=json.dumps(rec["spec"]))
    item.pop("job_id")
    return serialize(item)


def test_webhook_links_are_made_by_the_sender_at_send_time_not_when_the_stream_captured_the_change():
    running = {**record([]), "status": "running", "completed_at": None}
    (delivery,) = deliveries(_image(running), _image(record([{"key": KEY, "content_type": "image/png"}])))
    assert delivery.job["outputs"] == [{"key": KEY, "content_type": "image/png", "generator": None}]
    message = Delivery.from_json(delivery.to_json())  # through the deliveries queue
    sent = []

    class Sender:
        def try_once(self, url, event, job, webhook_id):
            sent.append(job)
            return type("R", (), {"delivered": True, "trips_breaker": False})(), False

    now = [2000.0]
    handler = SenderHandler(Sender(), None, "q", OutputLinks(CDN, ClockSigner(), ttl_s=3600, clock=lambda: now[0]))
    handler.handle({"Records": [{"messageId": "m1", "body": message.to_json()}]})
    now[0] = 7000.0  # a retry an hour and more later gets a link of its own
    handler.handle({"Records": [{"messageId": "m2", "body": message.to_json()}]})
    assert [job["outputs"] for job in sent] == [
        [{"url": f"{CDN}/{KEY}?Expires=5600", "content_type": "image/png", "generator": None}],
        [{"url": f"{CDN}/{KEY}?Expires=10600", "content_type": "image/png", "generator": None}]]


def test_a_delivery_queued_before_issue_43_keeps_the_url_it_carries():
    job = {"id": "j_01", "outputs": [{"url": f"{CDN}/{KEY}", "content_type": "image/png", "generator": None}]}
    assert OutputLinks("https://elsewhere", ClockSigner()).resolve(job) == job
