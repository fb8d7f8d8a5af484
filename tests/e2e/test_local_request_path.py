"""The request path in local mode, for both queue kinds: client -> API -> queue -> agents -> S3 -> CDN.

Everything is the real code: the API is fleetdev.local_server (the Lambda handler), the agents are
``python -m runtime.worker run`` subprocesses, AWS is a moto server subprocess, Kafka is librdkafka's
mock cluster, outputs are fetched from the CDN stand-in.
"""

from __future__ import annotations

import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from runtime.functions.webhooks import verify_signature
from tests.e2e._helpers import assert_clean, record, store

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def _fetch_png(url: str) -> Image.Image:
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, (url, response.status_code)
    assert response.headers["content-type"] == "image/png"
    image = Image.open(io.BytesIO(response.content))
    assert image.format == "PNG"
    return image


class _Hooks(BaseHTTPRequestHandler):
    received: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).received.append(({k.lower(): v for k, v in self.headers.items()}, body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return None


@pytest.fixture
def webhook_receiver():
    """A loopback HTTP server collecting webhook calls: yields (url, received list)."""
    handler = type("Hooks", (_Hooks,), {"received": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", handler.received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("queue_kind", ["sqs", "kafka"])
def test_request_path(start_platform, webhook_receiver, queue_kind: str) -> None:
    platform = start_platform(queue_kind=queue_kind, test_pattern_delay_seconds=0.2)
    ledger = platform.ledger
    instance_ids = {w.instance_id for w in platform.workers}

    unauthenticated = httpx.post(f"{platform.api_url}/v1/jobs", json={"model": "m", "inputs": {"prompt": "x"}})
    assert unauthenticated.status_code == 401

    hook_url, hooks = webhook_receiver
    sync = ledger.submit(prompt="sync job", width=512, height=320, seed=1, wait=20, webhook=hook_url,
                         webhook_events=["start", "completed"])
    assert ledger.submitted[sync["id"]]["response"] == 200, sync
    assert sync["status"] == "succeeded", sync
    assert sync["outputs"][0]["url"].startswith(platform.cdn.base_url + "/outputs/" + sync["id"] + "/")
    assert _fetch_png(sync["outputs"][0]["url"]).size == (512, 320)
    assert {"queue_wait_ms", "inference_ms", "upload_ms", "total_ms"} <= set(sync["timings"])

    sizes = {}
    for i in range(6):
        view = ledger.submit(prompt=f"async job {i}", width=64 * (i + 2), height=256, seed=i)
        assert ledger.submitted[view["id"]]["response"] == 202
        assert view["status"] in ("queued", "running", "succeeded")
        sizes[view["id"]] = (64 * (i + 2), 256)
    views = ledger.wait_final(list(sizes), timeout=45)
    for job_id, size in sizes.items():
        assert views[job_id]["status"] == "succeeded", views[job_id]
        assert _fetch_png(views[job_id]["outputs"][0]["url"]).size == size

    workers_used = {store(platform).get(job_id)["worker_id"] for job_id in sizes}
    assert workers_used <= instance_ids, workers_used

    # The webhook dispatcher (the functions process, fed by the table's stream) signed them.
    wait_hooks = time.monotonic() + 10
    while time.monotonic() < wait_hooks and len(hooks) < 2:
        time.sleep(0.1)
    events = {h["webhook-event"]: (h, body) for h, body in hooks}
    assert set(events) == {"start", "completed"}, [h for h, _ in hooks]
    headers, body = events["completed"]
    assert headers["webhook-id"] == f"{sync['id']}.completed"
    assert verify_signature(platform.webhook_secret, headers["webhook-signature"], body)
    assert json.loads(body)["job"]["status"] == "succeeded"

    report = ledger.report()
    record(f"request path ({queue_kind})", report)
    assert_clean(report, submitted=7)

    # The audit is the drills' instrument: check that it does see a job done twice. Writing an output
    # again after the record became final is what a second, late execution of the job would do.
    time.sleep(1.1)
    job_id = next(iter(sizes))
    key = urlsplit(views[job_id]["outputs"][0]["url"]).path.lstrip("/")  # outputs/<job>/<attempt>/image-0.png
    s3 = platform.aws("s3")
    body = s3.get_object(Bucket=platform.resources.outputs_bucket, Key=key)["Body"].read()
    s3.put_object(Bucket=platform.resources.outputs_bucket, Key=key, Body=body, ContentType="image/png")
    again = ledger.report()
    assert again.duplicated == 1 and job_id in again.problems[0], again.problems
