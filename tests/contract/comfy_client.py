"""A small ComfyUI client for the contract suite: raw HTTP and websocket, no adapter logic in between."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx

from runtime.backends._websocket import WebSocketClient


class Events:
    """One websocket session (opened before submitting); collects the events of one prompt id."""

    def __init__(self, base_url: str) -> None:
        self.client_id = uuid.uuid4().hex
        self.ws = WebSocketClient(base_url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}")
        self.ws.connect()
        self.seen: list[dict[str, Any]] = []

    def until(self, prompt_id: str, done: Any, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Read until ``done(event)`` is true for an event of ``prompt_id``; returns that prompt's events."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.ws.recv_text(timeout=max(0.05, deadline - time.monotonic()))
            if text is None:
                continue
            event = json.loads(text)
            data = event.get("data") or {}
            if isinstance(data, dict) and data.get("prompt_id") == prompt_id:
                self.seen.append(event)
                if done(event):
                    return list(self.seen)
        raise AssertionError(f"prompt {prompt_id}: no matching event within {timeout:.0f}s; saw "
                             f"{[e['type'] for e in self.seen]}")

    def finished(self, prompt_id: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Until ``executing`` with ``node: null``: the real server's last word on a prompt."""
        return self.until(prompt_id, lambda e: e["type"] == "executing" and e["data"].get("node") is None, timeout)

    def close(self) -> None:
        self.ws.close()


class ComfyClient:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=30.0)

    def events(self) -> Events:
        return Events(self.url)

    def submit(self, workflow: dict[str, Any], prompt_id: str | None = None, client_id: str | None = None,
               **extra: Any) -> httpx.Response:
        body: dict[str, Any] = {"prompt": workflow, **extra}
        if prompt_id is not None:
            body["prompt_id"] = prompt_id
        if client_id is not None:
            body["client_id"] = client_id
        return self.http.post("/prompt", json=body)

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        return self.http.get(f"/history/{prompt_id}").json().get(prompt_id)

    def queue(self) -> dict[str, Any]:
        return self.http.get("/queue").json()

    def running(self) -> list[str]:
        return [item[1] for item in self.queue()["queue_running"]]

    def wait_running(self, prompt_id: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while prompt_id not in self.running():
            if time.monotonic() > deadline:
                raise AssertionError(f"prompt {prompt_id} never ran")
            time.sleep(0.02)

    def wait_history(self, prompt_id: str, timeout: float = 60.0, differs_from: Any = None) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (entry := self.history(prompt_id)) is None or entry == differs_from:
            if time.monotonic() > deadline:
                raise AssertionError(f"no history for {prompt_id}")
            time.sleep(0.05)
        return entry

    def close(self) -> None:
        self.http.close()


def new_id(tag: str) -> str:
    return f"contract-{tag}-{uuid.uuid4().hex[:10]}"


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
