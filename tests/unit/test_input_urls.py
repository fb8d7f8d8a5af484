"""Input image URLs and the workers' egress agree: https on port 443 only, at the API, in the worker's
fetcher and in local mode (which allows loopback hosts, not other schemes or ports).

The workers' security group lets out TCP 443 alone (components/launch_template.py), so an ``http://`` or
``:8080`` input URL would hang on AWS until the fetch times out, while it worked locally. Webhook URLs are
not affected: the webhook sender runs outside the VPC.
"""

from __future__ import annotations

import json

import httpx
import pytest

from components import launch_template
from runtime.api.app import ApiApp, ApiOptions
from runtime.api.handler import handle_event
from runtime.backends.base import JobInputError
from runtime.instance_contract import EGRESS_HTTPS_PORT, INPUT_URL_PORTS, INPUT_URL_SCHEMES
from runtime.jobs.errors import ValidationError
from runtime.jobs.schema import validate_job
from runtime.queues.memory import InMemoryQueue
from runtime.worker.inputs import ImageFetcher

REFUSED = [("http://images.example.com/a.png", "url-scheme"),
           ("https://images.example.com:8443/a.png", "url-port"),
           ("https://images.example.com:80/a.png", "url-port")]
LOCAL_REFUSED = [("http://127.0.0.1:8000/a.png", "url-scheme"), ("https://localhost:8443/a.png", "url-port")]


def _img2img(url: str, field: str = "image") -> dict:
    inputs = {"prompt": "x", "image": "data:image/png;base64,iVBORw0KGgo="}
    inputs[field] = url
    return {"model": "m", "task": "img2img", "inputs": inputs}


def _rules(body: dict, allow_loopback: bool = False) -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        validate_job(body, allow_loopback=allow_loopback)
    return {(p.field, p.rule) for p in info.value.problems}


def test_the_accepted_urls_are_exactly_the_workers_egress():
    assert INPUT_URL_SCHEMES == ("https",) and INPUT_URL_PORTS == (EGRESS_HTTPS_PORT,) == (launch_template.HTTPS,)


@pytest.mark.parametrize(("url", "rule"), REFUSED)
@pytest.mark.parametrize("field", ["image", "mask"])
def test_api_refuses_input_urls_the_workers_cannot_fetch(url, rule, field):
    assert (f"inputs.{field}", rule) in _rules(_img2img(url, field))


def test_api_refuses_them_in_workflow_images_too():
    body = {"model": "m", "task": "comfyui-workflow",
            "inputs": {"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}},
                       "images": {"a.png": "http://images.example.com/a.png"}}}
    assert any(rule == "url-scheme" for _, rule in _rules(body))


@pytest.mark.parametrize("url", ["https://images.example.com/a.png", "https://images.example.com:443/a.png"])
def test_api_accepts_https_on_443(url):
    assert validate_job(_img2img(url))["inputs"]["image"] == url


@pytest.mark.parametrize(("url", "rule"), LOCAL_REFUSED)
def test_local_mode_enforces_the_same_rule(url, rule):
    """Local mode allows loopback hosts (allow_loopback), never another scheme or port."""
    assert ("inputs.image", rule) in _rules(_img2img(url), allow_loopback=True)
    app = ApiApp(store=None, producer=InMemoryQueue(), options=ApiOptions(auth_mode="none", allow_loopback=True))
    event = {"rawPath": "/v1/jobs", "headers": {"content-type": "application/json"}, "body": json.dumps(_img2img(url)),
             "requestContext": {"http": {"method": "POST", "path": "/v1/jobs"}, "requestId": "r1"}}
    answer = handle_event(event, app)
    assert answer["statusCode"] == 422
    assert rule in answer["body"] and "port 443" in answer["body"]


def test_webhook_urls_keep_http_and_ports():
    """The webhook sender runs outside the VPC: its URLs are not bound by the workers' egress."""
    body = {"model": "m", "inputs": {"prompt": "x"}, "webhook": "http://hooks.example.com:8080/done"}
    assert validate_job(body)["webhook"] == "http://hooks.example.com:8080/done"


def _no_network(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the fetcher connected to {request.url} before refusing it")


@pytest.mark.parametrize(("url", "rule"), [(u, r.removeprefix("url-")) for u, r in REFUSED + LOCAL_REFUSED])
def test_worker_fetcher_refuses_them_before_connecting_even_in_local_mode(url, rule):
    fetcher = ImageFetcher(allow_loopback=True, resolver=lambda host, port: ["93.184.216.34"],
                           transport=httpx.MockTransport(_no_network))
    with pytest.raises(JobInputError, match=rf"refused \({rule}\)"):
        fetcher.fetch(url)


def test_worker_fetcher_fetches_https_on_443():
    seen = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.port or 443)
        return httpx.Response(200, content=b"png")

    fetcher = ImageFetcher(resolver=lambda host, port: ["93.184.216.34"], transport=httpx.MockTransport(serve))
    assert fetcher.fetch("https://images.example.com/a.png") == b"png" and seen == [443]
