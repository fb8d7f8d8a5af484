"""ComfyUI's ``/ws`` event stream read through the ``websockets`` library (sync client).

A small adapter keeps the interface the backend was written against: ``connect()``, ``recv_text(timeout)`` (the
next text message, None when the time runs out; binary messages, ComfyUI's preview images, go to an ``on_binary``
callback or are dropped) and ``close()``; pings from the server are answered by the library. No keepalive pings of
our own (ComfyUI runs on the same instance, and the backend also polls ``/history``), no proxy, no compression.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from urllib.parse import urlsplit, urlunsplit

from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.sync.client import ClientConnection, connect

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class WebSocketError(Exception):
    """The websocket could not be opened or broke."""


class WebSocketClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "http"):
            raise WebSocketError(f"only ws:// URLs are supported, got {url!r}")
        self._url = urlunsplit(parts._replace(scheme="ws"))
        self._timeout = timeout
        self._conn: ClientConnection | None = None
        self._scope = ExitStack()  # the library's connect() is a context manager; close() leaves it

    def connect(self) -> WebSocketClient:
        try:
            self._conn = self._scope.enter_context(connect(
                self._url, open_timeout=self._timeout, close_timeout=self._timeout, ping_interval=None,
                compression=None, proxy=None, max_size=MAX_MESSAGE_BYTES))
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            raise WebSocketError(f"cannot open {self._url}: {exc}") from exc
        return self

    def recv_text(self, timeout: float, on_binary: Callable[[bytes], None] | None = None) -> str | None:
        """The next text message, or None when ``timeout`` passes first. Raises WebSocketError on close.
        Binary messages on the way (ComfyUI's previews) go to ``on_binary``, or are dropped without one."""
        if self._conn is None:
            raise WebSocketError("websocket is not connected")
        deadline = time.monotonic() + timeout
        try:
            while True:
                message = self._conn.recv(timeout=max(0.0, deadline - time.monotonic()))
                if isinstance(message, str):
                    return message
                if on_binary is not None:
                    on_binary(message)
                # then wait on for text within what is left of the timeout
        except TimeoutError:
            return None
        except ConnectionClosed as exc:
            raise WebSocketError(f"websocket closed by peer: {exc}") from exc
        except OSError as exc:
            raise WebSocketError(f"websocket read failed: {exc}") from exc

    def close(self) -> None:
        self._conn = None
        self._scope.close()
