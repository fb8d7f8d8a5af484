"""IMDSv2 client: session token (PUT /latest/api/token), then GETs with the token header.

Short timeouts and no retries beyond one token refresh: the lifecycle watcher polls every few seconds,
so a missed read is simply read again. ``None`` means "not present" (404), which is how IMDS says
"no spot notice" or "no rebalance recommendation".
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)

TOKEN_TTL_SECONDS = 21600
_TOKEN_HEADER = "X-aws-ec2-metadata-token"  # noqa: S105 - a header name


class IMDSError(Exception):
    """The metadata service could not be reached or answered unexpectedly."""


class IMDSClient:
    def __init__(self, base_url: str = "http://169.254.169.254", timeout: float = 1.0) -> None:
        self._client = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._token: str | None = None
        self._token_expiry = 0.0

    def _fetch_token(self) -> str:
        try:
            response = self._client.put("/latest/api/token",
                                        headers={"X-aws-ec2-metadata-token-ttl-seconds": str(TOKEN_TTL_SECONDS)})
        except httpx.HTTPError as exc:
            raise IMDSError(f"IMDS token request failed: {exc}") from exc
        if response.status_code != 200:
            raise IMDSError(f"IMDS token request: HTTP {response.status_code}")
        self._token = response.text
        self._token_expiry = time.monotonic() + TOKEN_TTL_SECONDS - 60
        return self._token

    def _token_value(self) -> str:
        if self._token is None or time.monotonic() >= self._token_expiry:
            return self._fetch_token()
        return self._token

    def get(self, path: str) -> str | None:
        """``/latest/meta-data/<path>`` as text, or None when absent (404)."""
        for attempt in range(2):
            try:
                response = self._client.get(f"/latest/meta-data/{path}", headers={_TOKEN_HEADER: self._token_value()})
            except httpx.HTTPError as exc:
                raise IMDSError(f"IMDS GET {path} failed: {exc}") from exc
            if response.status_code == 401 and attempt == 0:
                self._token = None  # expired or revoked: get a new one and try once more
                continue
            if response.status_code == 404:
                return None
            if response.status_code != 200:
                raise IMDSError(f"IMDS GET {path}: HTTP {response.status_code}")
            return response.text
        raise IMDSError(f"IMDS GET {path}: token refused twice")

    def get_json(self, path: str) -> dict[str, Any] | None:
        text = self.get(path)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise IMDSError(f"IMDS {path} is not JSON: {text[:100]!r}") from exc
        return value if isinstance(value, dict) else None

    def instance_id(self) -> str:
        value = self.get("instance-id")
        if not value:
            raise IMDSError("IMDS has no instance-id")
        return value

    def spot_instance_action(self) -> dict[str, Any] | None:
        return self.get_json("spot/instance-action")

    def rebalance_recommendation(self) -> dict[str, Any] | None:
        return self.get_json("events/recommendations/rebalance")

    def target_lifecycle_state(self) -> str | None:
        return self.get("autoscaling/target-lifecycle-state")

    def auto_scaling_group(self) -> str | None:
        """The group name from instance metadata tags (needs tags in metadata enabled), else None."""
        try:
            return self.get("tags/instance/aws:autoscaling:groupName")
        except IMDSError:
            return None

    def close(self) -> None:
        self._client.close()
