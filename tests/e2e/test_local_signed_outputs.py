"""Signed output URLs in local mode (issue 43): the API hands out CloudFront-signed links and the CDN stand-in
checks them as CloudFront does. A link works until its expiry and then answers 403; a tampered signature,
an unsigned URL and a URL re-pointed at another job's object answer 403."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TTL_S = 20  # long enough for the reads below on a loaded machine; the test waits for it to pass once


def _get(url: str) -> int:
    return httpx.get(url, timeout=10).status_code


def test_signed_links_work_until_they_expire_and_nothing_else_is_served(start_platform) -> None:
    platform = start_platform(test_pattern_delay_seconds=0.1, output_url_ttl_seconds=TTL_S)
    first = platform.ledger.submit(prompt="one", width=64, height=64, seed=1, wait=20)
    second = platform.ledger.submit(prompt="two", width=64, height=64, seed=2, wait=20)
    assert first["status"] == second["status"] == "succeeded", (first, second)
    url, other = first["outputs"][0]["url"], second["outputs"][0]["url"]
    query = parse_qs(urlsplit(url).query)
    assert {"Expires", "Signature", "Key-Pair-Id"} <= set(query), url
    expires = int(query["Expires"][0])
    assert 0 < expires - time.time() <= TTL_S + 1  # from outputUrlTtlSeconds, counted from the answer

    assert _get(url) == 200
    base = url.split("?", 1)[0]
    assert _get(base) == 403  # unsigned
    signature = query["Signature"][0]
    tampered = url.replace(signature, ("A" if signature[0] != "A" else "B") + signature[1:])
    assert _get(tampered) == 403
    truncated = url.replace(signature, signature[:-8])
    assert _get(truncated) == 403
    other_key = urlsplit(other).path
    repointed = url.replace(urlsplit(url).path, other_key)  # first job's signature, second job's object
    assert _get(repointed) == 403 and _get(other) == 200
    later = url.replace(f"Expires={expires}", f"Expires={expires + 3600}")  # a longer life is not for the taking
    assert _get(later) == 403

    # A fresh read of the job hands out a fresh link; the old one stops working at its expiry.
    while time.time() <= expires + 0.5:
        time.sleep(0.5)
    assert _get(url) == 403
    fresh = platform.ledger.http.get(f"/v1/jobs/{first['id']}").json()["outputs"][0]["url"]
    assert fresh != url and _get(fresh) == 200
