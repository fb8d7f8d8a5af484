"""Shared helpers for adapters that talk HTTP to a backend on localhost (ComfyUI, A1111)."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from runtime.backends.base import BackendUnavailable, JobInputError

log = logging.getLogger(__name__)


def request(client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """One request; transport errors and 5xx become BackendUnavailable (retryable)."""
    try:
        response = client.request(method, path, **kwargs)
    except httpx.HTTPError as exc:
        raise BackendUnavailable(f"{method} {path}: {type(exc).__name__}: {exc}") from exc
    if response.status_code >= 500:
        raise BackendUnavailable(f"{method} {path}: HTTP {response.status_code}: {response.text[:300]}")
    return response


def wait_until(probe: Callable[[], bool], timeout: float, what: str, is_alive: Callable[[], bool] | None) -> None:
    """Poll ``probe`` until it returns True; give up after ``timeout`` or as soon as the process died."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if probe():
                return
        except BackendUnavailable as exc:
            log.debug("%s not ready yet: %s", what, exc)
        if is_alive is not None and not is_alive():
            raise BackendUnavailable(f"{what} process exited while waiting for it to become ready")
        if time.monotonic() >= deadline:
            raise BackendUnavailable(f"{what} not ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def link_model(source: Path, model_dir: Path, name: str | None = None) -> str:
    """Place a cached model where the backend's loader looks (a symlink into its models folder).

    A symlink keeps a single copy on disk; the model cache keeps the target pinned while it is in use.
    """
    if not source.exists():
        raise JobInputError(f"model file {source} is missing from the cache")
    model_dir.mkdir(parents=True, exist_ok=True)
    name = name or source.name
    link = model_dir / name
    if link.is_symlink() or link.exists():
        if link.is_symlink() and Path(os.readlink(link)) == source:
            return name
        link.unlink()
    link.symlink_to(source)
    return name
