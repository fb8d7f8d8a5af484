"""The CDN stand-in answers HTTP Range requests as CloudFront does for an S3 origin (issue 36): players seek."""

from __future__ import annotations

import io

import httpx
import pytest

from fleetdev.local.cdn import CdnServer, byte_range

BODY = bytes(range(256)) * 4  # 1024 bytes


class Objects:
    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's argument names
        return {"Body": io.BytesIO(BODY), "ContentType": "video/mp4"}


@pytest.mark.parametrize("header,expected", [
    (None, (200, None)),
    ("bytes=0-99", (206, (0, 99))),
    ("bytes=1000-", (206, (1000, 1023))),
    ("bytes=-24", (206, (1000, 1023))),
    ("bytes=-5000", (206, (0, 1023))),
    ("bytes=1000-5000", (206, (1000, 1023))),  # the end is clamped to the object
    ("bytes=1024-", (416, None)),  # starts past the end
    ("bytes=-0", (416, None)),
    ("bytes=0-1,5-9", (200, None)),  # several ranges: S3 serves one; the whole object
    ("bytes=9-5", (200, None)),  # descending: not honoured
    ("items=0-5", (200, None)),
    ("bytes=abc", (200, None)),
])
def test_byte_ranges(header, expected):
    assert byte_range(header, len(BODY)) == expected


@pytest.fixture
def cdn():
    server = CdnServer(Objects(), "outputs").start()
    yield server
    server.stop()


def test_a_range_request_gets_206_with_the_bytes_and_content_range(cdn):
    resp = httpx.get(f"{cdn.base_url}/j/1/video-0.mp4", headers={"Range": "bytes=100-199"})
    assert resp.status_code == 206 and resp.content == BODY[100:200]
    assert resp.headers["content-range"] == "bytes 100-199/1024" and resp.headers["content-length"] == "100"
    assert resp.headers["accept-ranges"] == "bytes" and resp.headers["content-type"] == "video/mp4"


def test_a_range_past_the_end_gets_416_naming_the_size(cdn):
    resp = httpx.get(f"{cdn.base_url}/j/1/video-0.mp4", headers={"Range": "bytes=2000-"})
    assert resp.status_code == 416 and resp.headers["content-range"] == "bytes */1024" and resp.content == b""


def test_without_a_range_the_whole_object_says_it_accepts_ranges(cdn):
    resp = httpx.get(f"{cdn.base_url}/j/1/video-0.mp4")
    assert resp.status_code == 200 and resp.content == BODY and resp.headers["accept-ranges"] == "bytes"
    head = httpx.head(f"{cdn.base_url}/j/1/video-0.mp4", headers={"Range": "bytes=0-9"})
    assert head.status_code == 206 and head.headers["content-length"] == "10"
