"""Local mode, issue 44 lane F (Done when): a WebP job's output comes from the CDN stand-in as WebP with a private
cache policy and the seed used; labels find it in the job list; DELETE removes it: its output URL answers 404 and
its record holds no prompt."""

from __future__ import annotations

import io
import json
import uuid

import httpx
import pytest
from PIL import Image

from tests.e2e._helpers import store

pytestmark = [pytest.mark.e2e]

PROMPT = "a lighthouse for the deletion drill"


def test_webp_output_seed_labels_and_deletion_in_local_mode(start_platform):
    platform = start_platform(backend="test-pattern", workers=1)
    http = platform.ledger.http
    label = uuid.uuid4().hex[:12]
    body = {"model": "sdxl-base-1.0", "metadata": {"user": label},
            "inputs": {"prompt": PROMPT, "width": 128, "height": 96, "output_format": "webp", "output_quality": 70}}
    created = http.post("/v1/jobs", json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    view = platform.ledger.wait_final([job_id], timeout=120)[job_id]
    assert view["status"] == "succeeded", view
    [output] = view["outputs"]
    assert output["content_type"] == "image/webp" and output["url"].split("?")[0].endswith("/image-0.webp")
    assert isinstance(output["seed"], int) and view["metadata"] == {"user": label}
    answer = httpx.get(output["url"], timeout=10)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/webp"
    assert answer.headers["cache-control"] == "private, max-age=300"
    assert Image.open(io.BytesIO(answer.content)).format == "WEBP"

    listed = http.get("/v1/jobs", params={"metadata.user": label}).json()["jobs"]
    assert [j["id"] for j in listed] == [job_id]

    deleted = http.delete(f"/v1/jobs/{job_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["deleted_at"] and deleted.json()["outputs"] == []
    assert http.delete(f"/v1/jobs/{job_id}").json() == deleted.json()  # twice: the same answer
    assert httpx.get(output["url"], timeout=10).status_code in (403, 404)
    record = store(platform).get(job_id)
    assert PROMPT not in json.dumps(record, default=str) and record["deleted_at"]
    assert http.get("/v1/jobs", params={"metadata.user": label}).json()["jobs"] == []
