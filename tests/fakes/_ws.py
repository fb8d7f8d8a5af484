"""Server side of RFC 6455 for the fakes: handshake, text and binary frames out, client frames read."""

from __future__ import annotations

import base64
import hashlib
import json
import struct
import threading
from typing import Any

from tests.fakes._server import Handler

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ServerSocket:
    """One accepted websocket; ``send_*`` may be called from any thread."""

    def __init__(self, h: Handler) -> None:
        self.h = h
        self._lock = threading.Lock()
        self.closed = False

    @classmethod
    def accept(cls, h: Handler) -> ServerSocket | None:
        key = h.headers.get("Sec-WebSocket-Key")
        if not key or h.headers.get("Upgrade", "").lower() != "websocket":
            h.send(400, b"Expected websocket upgrade", "text/plain")
            return None
        accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        h.send_response(101)
        h.send_header("Upgrade", "websocket")
        h.send_header("Connection", "Upgrade")
        h.send_header("Sec-WebSocket-Accept", accept)
        h.end_headers()
        h.wfile.flush()
        return cls(h)

    def send_json(self, value: Any) -> bool:
        return self._send(0x1, json.dumps(value).encode())

    def send_bytes(self, data: bytes) -> bool:
        return self._send(0x2, data)

    def _send(self, opcode: int, data: bytes) -> bool:
        """False when the client went away (as aiohttp's send in ComfyUI, the error is swallowed)."""
        n = len(data)
        if n < 126:
            size = bytes([n])
        elif n < 65536:
            size = bytes([126]) + struct.pack(">H", n)
        else:
            size = bytes([127]) + struct.pack(">Q", n)
        try:
            with self._lock:
                self.h.wfile.write(bytes([0x80 | opcode]) + size + data)
                self.h.wfile.flush()
            return True
        except (OSError, ValueError):  # ValueError: the handler already closed the file
            self.closed = True
            return False

    def read_until_closed(self) -> None:
        """Read (and drop) client frames until a close frame or EOF."""
        rfile = self.h.rfile
        try:
            while True:
                head = rfile.read(2)
                if len(head) < 2 or head[0] & 0x0F == 0x8:
                    break
                n = head[1] & 0x7F
                if n == 126:
                    n = struct.unpack(">H", rfile.read(2))[0]
                elif n == 127:
                    n = struct.unpack(">Q", rfile.read(8))[0]
                rfile.read((4 if head[1] & 0x80 else 0) + n)
        except (OSError, ValueError, struct.error):
            pass
        finally:
            self.closed = True
            self.h.close_connection = True
