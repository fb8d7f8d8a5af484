"""Output links (issue 43): the one place an output's URL is made, when it is handed out.

A job record stores the object ``key`` of each output (``outputs/<job>/<lease>/<name>``), never a URL.
Every hand-out makes the URL here, at that moment: ``GET /v1/jobs/{id}`` and the job list, the sync answer
of ``POST /v1/jobs``, the events feed, and webhooks (made by the sender at send time, not when the table's
stream captured the change, so a signed link in a late delivery still has its whole lifetime).

``OutputLinks(base_url, signer, ttl_s).url(key)`` is ``<base_url>/<key>``, signed by ``signer`` to expire
``ttl_s`` seconds after it is made (``signer`` None: a public link, ``outputAccess: public``).

Records written before issue 43 carry ``url`` and no ``key``: ``output_key`` reads the key back from the
URL's path (the CDN serves the bucket's keys at its root), so old records get links the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

DEFAULT_TTL_SECONDS = 3600  # outputUrlTtlSeconds' default (docs/api.md)


class UrlSigner(Protocol):
    """Signs a URL so that the CDN serves it until ``expires_at`` (epoch seconds) and refuses it after."""

    def sign(self, url: str, expires_at: int) -> str: ...


def output_key(output: Mapping[str, Any]) -> str | None:
    """The object key an output entry points at: its ``key``, or (records from before issue 43) its URL's path."""
    key = output.get("key")
    if key:
        return str(key)
    url = output.get("url")
    if url:
        return urlsplit(str(url)).path.lstrip("/") or None
    return None


class OutputLinks:
    """Makes output URLs for clients; safe to share between threads (it holds no state that changes)."""

    def __init__(self, base_url: str, signer: UrlSigner | None = None, ttl_s: int = DEFAULT_TTL_SECONDS,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl_s <= 0:
            raise ValueError(f"an output link's lifetime must be positive, not {ttl_s} s")
        self.base_url = base_url.rstrip("/")
        self.signer, self.ttl_s, self._clock = signer, int(ttl_s), clock

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def url(self, key: str) -> str:
        """The link to ``key``: public, or signed to expire ``ttl_s`` from now."""
        url = f"{self.base_url}/{quote(key.lstrip('/'), safe='/')}"
        if self.signer is None:
            return url
        return self.signer.sign(url, self.expires_at())

    def expires_at(self) -> int:
        """When a link made now stops working (epoch seconds)."""
        return int(self._clock()) + self.ttl_s

    def link(self, output: Mapping[str, Any]) -> str | None:
        """The URL of one record output entry (new entries: from ``key``; old ones: from their stored URL's path)."""
        key = output_key(output)
        if key is None:
            return None
        return self.url(key)

    def resolve(self, view: Mapping[str, Any]) -> dict[str, Any]:
        """A job view captured with keys (``public_view(..., links=None)``) with each output's URL made now.

        Outputs that already carry a URL and no key (deliveries queued before issue 43) keep it."""
        outputs = view.get("outputs")
        if not outputs:
            return dict(view)
        resolved = []
        for o in outputs:
            entry = {k: v for k, v in o.items() if k != "key"}
            if o.get("key"):
                entry["url"] = self.url(str(o["key"]))
            resolved.append(entry)
        return {**view, "outputs": resolved}
