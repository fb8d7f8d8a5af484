"""Signed output URLs (issue 43): botocore's CloudFrontSigner with our RSA key (runtime/jobs/cdn_signing.py), checked
as CloudFront checks them by local mode's CDN stand-in (fleetdev/local/cdn_signatures.py, fleetdev/local/cdn.py)."""

from __future__ import annotations

import io
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from fleetdev.local.cdn import CdnServer
from fleetdev.local.cdn_signatures import SignedUrlVerifier
from runtime.jobs.cdn_signing import CloudFrontUrlSigner, new_key_pair, output_links

KEY_ID = "K2JCJMDEHXQW5F"
CDN = "https://d111111abcdef8.cloudfront.net"
URL = f"{CDN}/outputs/j_01/3/image-0.png"
PRIVATE, PUBLIC = new_key_pair()
OTHER_PRIVATE, _ = new_key_pair()


def _split(url: str) -> tuple[str, dict[str, str]]:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}", dict(parse_qsl(parts.query))


@pytest.fixture
def clock():
    return [1_000_000.0]


@pytest.fixture
def verifier(clock):
    return SignedUrlVerifier({KEY_ID: PUBLIC}, clock=lambda: clock[0])


def test_a_signed_url_is_a_canned_policy_cloudfront_accepts_until_it_expires(verifier, clock):
    signed = CloudFrontUrlSigner(KEY_ID, PRIVATE).sign(URL, 1_000_600)
    resource, query = _split(signed)
    assert resource == URL and set(query) == {"Expires", "Signature", "Key-Pair-Id", "Hash-Algorithm"}
    assert query["Expires"] == "1000600" and query["Key-Pair-Id"] == KEY_ID and query["Hash-Algorithm"] == "SHA256"
    assert verifier.refusal(resource, query) is None
    clock[0] = 1_000_599.0
    assert verifier.refusal(resource, query) is None
    clock[0] = 1_000_600.0
    assert verifier.refusal(resource, query) == "expired"


def test_tampered_truncated_unsigned_repointed_extended_or_foreign_urls_are_refused(verifier):
    resource, query = _split(CloudFrontUrlSigner(KEY_ID, PRIVATE).sign(URL, 1_000_600))
    sig = query["Signature"]
    cases = {
        "tampered": (resource, {**query, "Signature": ("A" if sig[0] != "A" else "B") + sig[1:]}),
        "truncated": (resource, {**query, "Signature": sig[:-8]}),
        "unsigned": (resource, {}),
        "repointed": (f"{CDN}/outputs/j_02/1/image-0.png", query),
        "extended": (resource, {**query, "Expires": "1003600"}),
        "another key id": (resource, {**query, "Key-Pair-Id": "KOTHER"}),
        "another key": _split(CloudFrontUrlSigner(KEY_ID, OTHER_PRIVATE).sign(URL, 1_000_600)),
        "custom policy": (resource, {**query, "Policy": "e30_"}),
        "another hash": (resource, {**query, "Hash-Algorithm": "SHA1"}),
    }
    refused = {name: verifier.refusal(*case) for name, case in cases.items()}
    assert all(refused.values()), refused


def test_links_are_signed_only_when_the_process_is_given_a_key():
    class Ssm:
        reads = 0

        def get_parameter(self, Name, WithDecryption):  # noqa: N803 - boto3's argument names
            assert WithDecryption is True
            Ssm.reads += 1
            return {"Parameter": {"Value": PRIVATE}}

    assert output_links(CDN, None, None, Ssm).url("outputs/a.png") == f"{CDN}/outputs/a.png"
    assert Ssm.reads == 0  # public links read no key
    with pytest.raises(RuntimeError, match="GENAI_OUTPUT_SIGNING_KEY_ID and GENAI_OUTPUT_SIGNING_KEY_PARAMETER"):
        output_links(CDN, KEY_ID, None, Ssm)
    links = output_links(CDN, KEY_ID, "/genai-fleet/dev/output-signing-keys/k1/private", Ssm, ttl_s=60)
    assert links.signed and Ssm.reads == 1
    verifier = SignedUrlVerifier({KEY_ID: PUBLIC})
    assert verifier.refusal(*_split(links.url("outputs/a.png"))) is None
    assert Ssm.reads == 1  # once per process, not per link


class Objects:
    def get_object(self, Bucket, Key):  # noqa: N803 - boto3's argument names
        return {"Body": io.BytesIO(b"\x89PNG..."), "ContentType": "image/png"}


def test_the_local_cdn_answers_403_before_reading_the_bucket_unless_the_signature_holds(clock):
    server = CdnServer(Objects(), "outputs", verifier=SignedUrlVerifier({KEY_ID: PUBLIC}, clock=lambda: clock[0]))
    server.start()
    try:
        url = f"{server.base_url}/outputs/j_01/3/image-0.png"
        signed = CloudFrontUrlSigner(KEY_ID, PRIVATE).sign(url, 1_000_600)
        assert httpx.get(signed).status_code == 200
        assert httpx.get(url).status_code == 403
        assert httpx.get(signed.replace("/j_01/", "/j_02/")).status_code == 403
        clock[0] = 1_000_601.0
        assert httpx.get(signed).status_code == 403
    finally:
        server.stop()
