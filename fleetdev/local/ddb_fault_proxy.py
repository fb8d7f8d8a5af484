"""A loopback proxy in front of local mode's DynamoDB that injects faults into final writes (chaos).

Every request is forwarded to the local AWS endpoint as it came. A *final write* is an UpdateItem that
sets ``completed_at`` under a lease condition (runtime.jobs.attempts ``finish``); the proxy's ``mode``
decides what happens to it:

    applied-then-500   forward it, then answer 500 InternalServerError instead of DynamoDB's answer, the
                       first time each distinct request is seen (DynamoDB documents that a 500 can follow
                       a write that applied); botocore retries it, and the retry goes through untouched
    hold               forward it ``hold_s`` seconds late (a window in which a worker can be killed after
                       uploading its outputs and before its final write lands)

``faulted`` counts the final writes it touched; ``dropped`` the held ones whose sender died while held (they
are not forwarded: a write still inside a killed process never reaches DynamoDB). Start with
``DynamoFaultProxy(upstream, mode).start()``, point the agents' ``endpoints.dynamodb`` at ``url``,
``stop()`` at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import select
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

MODES = ("applied-then-500", "hold")
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host", "date", "server"}
_INTERNAL_ERROR = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#InternalServerError",
                              "message": "Internal server error"}).encode()


def is_final_write(target: str, body: bytes) -> bool:
    if not target.endswith(".UpdateItem"):
        return False
    try:
        request = json.loads(body)
    except ValueError:
        return False
    names = (request.get("ExpressionAttributeNames") or {}).values()
    return "completed_at" in names and "lease = :lease" in str(request.get("ConditionExpression", ""))


class DynamoFaultProxy:
    def __init__(self, upstream: str, mode: str, hold_s: float = 2.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode {mode!r}: must be one of {', '.join(MODES)}")
        parts = urlsplit(upstream)
        self.upstream_host, self.upstream_port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mode, self.hold_s = mode, hold_s
        self.faulted = self.dropped = 0
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: Any) -> None:
                return None

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                target = self.headers.get("X-Amz-Target", "")
                fault = proxy._decide(target, body)
                if fault == "hold":
                    time.sleep(proxy.hold_s)
                    if _peer_gone(self.connection):  # its sender died meanwhile: the write never left it
                        proxy.dropped += 1
                        return
                status, headers, answer = proxy._forward(self.command, self.path, dict(self.headers), body)
                if fault == "500":
                    status, headers, answer = 500, {"Content-Type": "application/x-amz-json-1.0"}, _INTERNAL_ERROR
                with contextlib.suppress(OSError):  # the sender may be gone (killed by the drill)
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> DynamoFaultProxy:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _decide(self, target: str, body: bytes) -> str | None:
        if not is_final_write(target, body):
            return None
        if self.mode == "hold":
            with self._lock:
                self.faulted += 1
            return "hold"
        digest = hashlib.sha256(body).hexdigest()
        with self._lock:
            if digest in self._seen:
                return None  # botocore's retry goes through
            self._seen.add(digest)
            self.faulted += 1
        return "500"

    def _forward(self, method: str, path: str, headers: dict[str, str], body: bytes
                 ) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, path, body=body, headers={k: v for k, v in headers.items()
                                                           if k.lower() not in _HOP_HEADERS})
            resp = conn.getresponse()
            answer = resp.read()
            kept = {k: v for k, v in resp.getheaders() if k.lower() not in _HOP_HEADERS}
            return resp.status, kept, answer
        finally:
            conn.close()


def _peer_gone(conn: socket.socket) -> bool:
    """True when the client closed its end (a killed process's sockets are closed by the kernel)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True
