"""Issue 38 in local mode: a job with ``"preview": true`` yields preview events whose URLs serve an image through the
local CDN (objects under ``previews/``), a job without yields none; and a job whose webhook subscribes to
``progress`` gets signed ``progress`` deliveries (from the event table's stream, local mode's poller) before its
``completed``, at most one per 5 s."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from PIL import Image

from genai_fleet_client import Client, verify_webhook

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class Receiver:
    """A webhook receiver on loopback that keeps every delivery (headers and raw body)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []
        received = self.deliveries

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append(({k: v for k, v in self.headers.items()}, body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


def _submit(platform: Any, **body: Any) -> str:
    job = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a cat", "width": 64, "height": 64, "seed": 1, "steps": 20},
           **body}
    resp = httpx.post(f"{platform.api_url}/v1/jobs", json=job, timeout=30,
                      headers={"Authorization": f"Bearer {platform.api_key}"})
    assert resp.status_code == 202, resp.text
    return resp.json()["id"]


def _events(platform: Any, job_id: str) -> list[dict[str, Any]]:
    with Client(platform.api_key, platform.api_url) as client:
        return list(client.follow(job_id, wait_s=10))


def test_previews_and_progress_webhooks_in_local_mode(start_platform) -> None:
    receiver = Receiver()
    try:
        platform = start_platform(workers=1, test_pattern_delay_seconds=7.0)
        wanted = _submit(platform, preview=True, webhook=receiver.url,
                         webhook_events_filter=["progress", "completed"])
        plain = _submit(platform, webhook=receiver.url)  # completed only, no previews
        events = _events(platform, wanted)
        others = _events(platform, plain)
        previews = [e for e in events if e["kind"] == "preview"]
        assert previews, events
        for event in previews:
            assert event["key"].startswith(f"previews/{wanted}/") and event["content_type"] == "image/jpeg"
            resp = httpx.get(event["url"], timeout=10)  # through the local CDN
            assert resp.status_code == 200 and resp.headers["Content-Type"] == "image/jpeg"
            with Image.open(io.BytesIO(resp.content)) as image:
                assert image.format == "JPEG" and image.size == (64, 64)
        assert events[-1]["status"] == "succeeded" and events.index(previews[-1]) < len(events) - 1
        assert [e for e in others if e["kind"] == "preview"] == []
        # the webhooks: a progress delivery or more for the subscribed job, none for the other, each signed
        deadline = 30.0
        with Client(platform.api_key, platform.api_url) as client:
            client.wait(plain, timeout_s=deadline)
        _wait_for(lambda: _bodies(receiver, "completed", wanted) and _bodies(receiver, "completed", plain), deadline)
        progress = _bodies(receiver, "progress", wanted)
        assert 1 <= len(progress) <= 1 + 7.0 / 5.0 + 1, progress  # the first, then one per 5 s at most
        assert all(b["job"]["progress"]["kind"] == "progress" for b in progress)
        assert _bodies(receiver, "progress", plain) == []
        for headers, body in receiver.deliveries:
            assert verify_webhook(platform.webhook_secret, headers["Webhook-Signature"], body)
        print(f"\npreviews: {len(previews)}, progress webhooks: {len(progress)}")
    finally:
        receiver.stop()


def _bodies(receiver: Receiver, event: str, job_id: str) -> list[dict[str, Any]]:
    out = []
    for _headers, body in list(receiver.deliveries):
        doc = json.loads(body)
        if doc["event"] == event and doc["job"]["id"] == job_id:
            out.append(doc)
    return out


def _wait_for(check: Any, timeout_s: float) -> None:
    done = threading.Event()
    for _ in range(int(timeout_s * 4)):
        if check():
            return
        done.wait(0.25)
    assert check(), "timed out"
