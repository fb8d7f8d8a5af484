"""Server side of the fakes' websockets, on the ``websockets`` library's Sans-I/O ``ServerProtocol``.

The fakes serve HTTP and ``/ws`` on one port (as ComfyUI's aiohttp does), so the handshake and the frames
run over the request handler's own socket: the library parses and builds every byte (handshake checks,
framing, masking rules, ping -> pong as aiohttp's autoping, the closing handshake); this module only moves
bytes between the protocol object and the socket.
"""

from __future__ import annotations

import json
import socket
import threading
from typing import Any

from websockets.protocol import State
from websockets.server import ServerProtocol

from tests.fakes._server import Handler

MAX_MESSAGE_BYTES = 16 * 1024 * 1024


class ServerSocket:
    """One accepted websocket; ``send_*`` may be called from any thread."""

    def __init__(self, h: Handler, protocol: ServerProtocol) -> None:
        self.h = h
        self._protocol = protocol
        self._lock = threading.Lock()
        self.closed = False

    @classmethod
    def accept(cls, h: Handler) -> ServerSocket | None:
        """Answer the upgrade (101), or a 4xx for a request that is not a valid handshake."""
        if h.headers.get("Upgrade", "").lower() != "websocket":  # aiohttp answers a plain GET with 400
            h.send(400, b"Expected websocket upgrade", "text/plain")
            return None
        protocol = ServerProtocol(max_size=MAX_MESSAGE_BYTES)
        # http.server has already read the request head: hand the same bytes to the library's parser.
        head = "".join([h.requestline, "\r\n", *(f"{k}: {v}\r\n" for k, v in h.headers.items()), "\r\n"])
        protocol.receive_data(head.encode("latin-1"))
        (request,) = protocol.events_received()
        response = protocol.accept(request)
        protocol.send_response(response)
        sock = cls(h, protocol)
        sock._flush()
        if response.status_code != 101:
            h.close_connection = True
            return None
        return sock

    def send_json(self, value: Any) -> bool:
        return self._send(lambda: self._protocol.send_text(json.dumps(value).encode()))

    def send_bytes(self, data: bytes) -> bool:
        return self._send(lambda: self._protocol.send_binary(data))

    def _send(self, frame) -> bool:
        """False when the client went away (as aiohttp's send in ComfyUI, the error is swallowed)."""
        with self._lock:
            if self.closed or self._protocol.state is not State.OPEN:
                return False
            frame()
            return self._flush_locked()

    def _flush(self) -> bool:
        with self._lock:
            return self._flush_locked()

    def _flush_locked(self) -> bool:
        try:
            for chunk in self._protocol.data_to_send():
                if chunk:
                    self.h.wfile.write(chunk)
                else:  # the library's end-of-stream marker: the server closes TCP first (RFC 6455 7.1.1)
                    self.h.wfile.flush()
                    self.h.connection.shutdown(socket.SHUT_WR)
                    self.closed = True
            self.h.wfile.flush()
            return True
        except (OSError, ValueError):  # ValueError: the handler already closed the file
            self.closed = True
            return False

    def read_until_closed(self) -> None:
        """Feed client bytes to the protocol (pings answered, messages dropped) until close or EOF."""
        rfile = self.h.rfile
        try:
            while not self.closed:
                chunk = rfile.read1(65536)
                with self._lock:
                    if chunk:
                        self._protocol.receive_data(chunk)
                    else:
                        self._protocol.receive_eof()
                    self._protocol.events_received()  # client messages are not used by the fakes
                    self._flush_locked()
                    if not chunk or self._protocol.state is State.CLOSED or self._protocol.close_expected():
                        break
        except (OSError, ValueError):
            pass
        finally:
            self.closed = True
            self.h.close_connection = True
