"""A job's inputs on the worker: its spec read once into the typed model, then its images.

``read_job`` parses the queue message's spec with the API's own rules (runtime.jobs.schema.JobSpec.parse)
into the ``JobSpec`` that the agent and the backends read; a spec that breaks them is a JobInputError naming
each field and rule, so the job fails for good (runtime.worker.failures) instead of each backend judging it.

Input images: inline ``data:`` URIs are decoded; URLs are fetched only after runtime.net_safety resolved and
checked them (no private, loopback or metadata addresses; https on port 443 only, all the workers' security
group lets out, in local mode too), with the request pinned to the checked address, no redirects and a size
cap.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from runtime.backends.base import BackendUnavailable, JobInputError
from runtime.instance_contract import INPUT_URL_PORTS, INPUT_URL_SCHEMES
from runtime.jobs.errors import ValidationError
from runtime.jobs.models import Img2ImgInputs, Img2VideoInputs, WorkflowInputs
from runtime.jobs.schema import JobSpec
from runtime.net_safety import UnsafeURLError, pinned_request, resolve_and_check

MAX_IMAGE_BYTES = 20 * 1024 * 1024


def read_job(data: Mapping[str, Any], allow_loopback: bool = False) -> JobSpec:
    """The typed spec of a queue message's ``job``; JobInputError (permanent) when it breaks the API's rules.
    ``allow_loopback``: the agent's ``allow_loopback_urls`` (local mode), as the API's own setting."""
    try:
        return JobSpec.parse(dict(data), allow_loopback=allow_loopback)
    except ValidationError as exc:
        problems = "; ".join(f"{p.field}: {p.message} [{p.rule}]" for p in exc.problems)
        raise JobInputError(f"the job's spec breaks the API's rules: {problems}"[:2000]) from exc


def image_refs(job: JobSpec) -> dict[str, str]:
    """name -> reference (URL or data URI) of every image the job names."""
    inputs = job.inputs
    if isinstance(inputs, Img2ImgInputs):
        return {"image": inputs.image, **({"mask": inputs.mask} if inputs.mask else {})}
    if isinstance(inputs, Img2VideoInputs):  # the image the video starts from
        return {"image": inputs.image}
    if isinstance(inputs, WorkflowInputs):
        return dict(inputs.images or {})
    return {}


def decode_data_uri(ref: str) -> bytes:
    try:
        return base64.b64decode(ref.split(",", 1)[1], validate=False)
    except (IndexError, binascii.Error) as exc:
        raise JobInputError(f"inline image is not valid base64: {exc}") from exc


class ImageFetcher:
    def __init__(self, allow_loopback: bool = False, timeout: float = 20.0,
                 resolver: Callable[[str, int], list[str]] | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.allow_loopback = allow_loopback
        self.resolver = resolver
        self._client = httpx.Client(timeout=timeout, follow_redirects=False, transport=transport)

    def fetch_all(self, job: JobSpec) -> dict[str, bytes]:
        return {name: self.fetch(ref) for name, ref in image_refs(job).items()}

    def fetch(self, ref: str) -> bytes:
        if ref.startswith("data:"):
            return decode_data_uri(ref)
        try:
            checked = resolve_and_check(ref, allow_loopback=self.allow_loopback, resolver=self.resolver,
                                        schemes=INPUT_URL_SCHEMES, ports=INPUT_URL_PORTS)
        except UnsafeURLError as exc:
            raise JobInputError(f"input image URL refused ({exc.rule}): {exc}") from exc
        url, headers, extensions = pinned_request(checked)
        try:
            with self._client.stream("GET", url, headers=headers, extensions=extensions) as response:
                if response.status_code != 200:
                    raise JobInputError(f"input image {checked.host}: HTTP {response.status_code}")
                data = bytearray()
                for chunk in response.iter_bytes():
                    data += chunk
                    if len(data) > MAX_IMAGE_BYTES:
                        raise JobInputError(f"input image larger than {MAX_IMAGE_BYTES} bytes")
                return bytes(data)
        except httpx.HTTPError as exc:
            raise BackendUnavailable(f"fetching input image from {checked.host} failed: {exc}") from exc

    def close(self) -> None:
        self._client.close()
