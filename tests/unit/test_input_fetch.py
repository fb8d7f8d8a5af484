"""Input images are fetched from the checked address only (issue 33, finding 3): a redirect, to the instance
metadata service or anywhere else, is refused as the job's input error and never followed; and the size cap holds."""

from __future__ import annotations

import httpx
import pytest

from runtime.backends.base import JobInputError
from runtime.worker.inputs import MAX_IMAGE_BYTES, ImageFetcher

PUBLIC = "93.184.216.34"


@pytest.mark.parametrize("location", [
    "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
    "http://127.0.0.1:8188/view?filename=secret.png",
    "/elsewhere.png",  # same host, other path: still a second request nobody checked
])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_and_never_followed(status, location):
    requests: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        if request.url.host == PUBLIC and request.url.path == "/cat.png":
            return httpx.Response(status, headers={"Location": location})
        return httpx.Response(200, content=b"credentials or a private image")

    fetcher = ImageFetcher(resolver=lambda host, port: [PUBLIC], transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(JobInputError, match=f"HTTP {status}"):
            fetcher.fetch("https://images.example.com/cat.png")
    finally:
        fetcher.close()
    assert [(r.url.host, r.url.path) for r in requests] == [(PUBLIC, "/cat.png")]
    assert requests[0].headers["host"] == "images.example.com"  # pinned to the checked address, named by host


def test_an_image_over_the_size_cap_is_refused_while_it_streams():
    sent = []

    def answer(request: httpx.Request) -> httpx.Response:
        def body():
            for _ in range(MAX_IMAGE_BYTES // (1 << 20) + 2):
                sent.append(1 << 20)
                yield b"\0" * (1 << 20)
        return httpx.Response(200, content=body())

    fetcher = ImageFetcher(resolver=lambda host, port: [PUBLIC], transport=httpx.MockTransport(answer))
    try:
        with pytest.raises(JobInputError, match=f"larger than {MAX_IMAGE_BYTES} bytes"):
            fetcher.fetch("https://images.example.com/huge.png")
    finally:
        fetcher.close()
    assert sum(sent) <= MAX_IMAGE_BYTES + (1 << 20)  # stopped at the cap, not after reading everything
