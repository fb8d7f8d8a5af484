"""A tiny RFC 6455 websocket client over a plain socket, enough to read ComfyUI's /ws events.

httpx has no websocket client and the runtime keeps its dependencies small, so this reads text frames
(with fragmentation), answers pings and handles close; it never sends data frames other than pong
and close. Binary frames (ComfyUI's preview images) are read and dropped. Loopback/plain ``ws://``
only: ComfyUI runs on the same instance.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
from urllib.parse import urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_FRAME = 16 * 1024 * 1024


class WebSocketError(Exception):
    """The websocket could not be opened or broke."""


class WebSocketClient:
    def __init__(self, url: str, timeout: float = 5.0) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "http"):
            raise WebSocketError(f"only ws:// URLs are supported, got {url!r}")
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 80
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> WebSocketClient:
        try:
            sock = socket.create_connection((self._host, self._port), timeout=self._timeout)
        except OSError as exc:
            raise WebSocketError(f"cannot connect to ws://{self._host}:{self._port}: {exc}") from exc
        key = base64.b64encode(os.urandom(16)).decode()
        request = (
            f"GET {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        self._sock = sock
        try:
            sock.sendall(request.encode())
            head = self._read_until(b"\r\n\r\n")
        except (OSError, WebSocketError) as exc:
            self.close()
            raise WebSocketError(f"websocket handshake failed: {exc}") from exc
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()  # noqa: S324 - protocol
        if " 101 " not in lines[0] + " " or headers.get("sec-websocket-accept") != accept:
            self.close()
            raise WebSocketError(f"websocket handshake refused: {lines[0]!r}")
        return self

    def _read_until(self, marker: bytes) -> bytes:
        while marker not in self._buf:
            self._fill()
        head, _, self._buf = self._buf.partition(marker)
        return head

    def _fill(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise WebSocketError("websocket closed by peer")
        self._buf += chunk

    def _parse(self) -> tuple[bool, int, bytes] | None:
        """One whole frame from the buffer, consumed; None (nothing consumed) while it is incomplete."""
        buf = self._buf
        if len(buf) < 2:
            return None
        b0, b1 = buf[0], buf[1]
        length, pos = b1 & 0x7F, 2
        if length == 126:
            if len(buf) < 4:
                return None
            (length,), pos = struct.unpack(">H", buf[2:4]), 4
        elif length == 127:
            if len(buf) < 10:
                return None
            (length,), pos = struct.unpack(">Q", buf[2:10]), 10
        if length > _MAX_FRAME:
            raise WebSocketError(f"websocket frame too large ({length} bytes)")
        mask = None
        if b1 & 0x80:
            mask, pos = buf[pos:pos + 4], pos + 4
        if len(buf) < pos + length:
            return None
        payload = buf[pos:pos + length]
        self._buf = buf[pos + length:]
        if mask:
            payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    def _read_frame(self) -> tuple[bool, int, bytes]:
        while (frame := self._parse()) is None:
            self._fill()
        return frame

    def _send(self, opcode: int, payload: bytes = b"") -> None:
        assert self._sock is not None
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            header += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self._sock.sendall(header + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload)))

    def recv_text(self, timeout: float) -> str | None:
        """The next text message, or None when ``timeout`` passes first. Raises WebSocketError on close."""
        if self._sock is None:
            raise WebSocketError("websocket is not connected")
        self._sock.settimeout(timeout)
        parts: list[bytes] = []
        try:
            while True:
                fin, opcode, payload = self._read_frame()
                if opcode == 0x8:
                    raise WebSocketError("websocket closed by peer")
                if opcode == 0x9:
                    self._send(0xA, payload)
                    continue
                if opcode in (0x1, 0x0):
                    parts.append(payload)
                    if fin:
                        return b"".join(parts).decode("utf-8", errors="replace")
                # binary frames (previews) and pongs are dropped
        except (TimeoutError, BlockingIOError):
            if parts:  # a fragmented message half read: the stream is out of step
                raise WebSocketError("websocket message timed out midway") from None
            return None
        except OSError as exc:
            raise WebSocketError(f"websocket read failed: {exc}") from exc

    def close(self) -> None:
        if self._sock is None:
            return
        try:
            self._send(0x8, struct.pack(">H", 1000))
        except OSError:
            pass
        try:
            self._sock.close()
        finally:
            self._sock = None
