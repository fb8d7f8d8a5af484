"""A tiny threaded HTTP server base for the fake backends (loopback only, free port)."""

from __future__ import annotations

import abc
import io
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from PIL import Image


def png(text: str, size: tuple[int, int] = (64, 64)) -> bytes:
    colour = tuple(hash(text) % 256 for _ in range(3))
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: Any) -> None:
        return None

    def setup(self) -> None:
        super().setup()
        self.server.fake.connections.add(self.connection)

    def finish(self) -> None:
        self.server.fake.connections.discard(self.connection)
        try:
            super().finish()
        except OSError:
            pass

    @property
    def query(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}

    @property
    def route(self) -> str:
        return urlsplit(self.path).path

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))

    def json_body(self) -> Any:
        raw = self.body()
        return json.loads(raw) if raw else {}

    def send(self, status: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, value: Any, status: int = 200) -> None:
        self.send(status, json.dumps(value).encode())

    def do_GET(self) -> None:
        self.server.fake.dispatch(self, "GET")

    def do_POST(self) -> None:
        self.server.fake.dispatch(self, "POST")


class Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hung up (or a crash that reset the connection) is normal here, not a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeServer(abc.ABC):
    """Start/stop on 127.0.0.1; subclasses implement ``dispatch(handler, method)``."""

    def __init__(self) -> None:
        self._server: Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0
        self.requests: list[tuple[str, str]] = []
        self.connections: set[socket.socket] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._server = Server(("127.0.0.1", self.port), Handler)
        self._server.fake = self
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening (a crash, from the client's point of view); ``start`` again restarts it."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        for conn in list(self.connections):  # a dead process drops its keep-alive and websocket connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.connections.clear()

    @abc.abstractmethod
    def dispatch(self, h: Handler, method: str) -> None:
        """Answer one request; each fake (ComfyUI, A1111) speaks its own documented API here."""
