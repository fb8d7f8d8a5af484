"""A small threaded HTTP server that runs the Lambda handler's ``handle_event`` for local mode and tests.

Each HTTP request becomes an API Gateway HTTP API (payload 2.0) event with no authorizer context, so
the app authenticates from the headers itself, exactly as the code path in Lambda does without an
authorizer. Bind to loopback (the default); it is not meant to face a network.

    python -m fleetdev.local_server --port 8080      # reads the GENAI_* variables (handler.py)
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fleetdev.local import sse
from runtime.api.app import ApiApp
from runtime.api.handler import ApiConfig, build_app, handle_event
from runtime.worker.logs import configure

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1_000_000
_MAX_CHUNK_LINE = 1024


class _FramingError(Exception):
    """The request cannot be framed (length, chunking); answered with ``status`` and the connection closed."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _event(method: str, target: str, headers: dict[str, str], body: bytes, host: str) -> dict[str, Any]:
    parts = urlsplit(target)
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": parts.path or "/", "rawQueryString": parts.query,
        "headers": headers, "queryStringParameters": dict(parse_qsl(parts.query)) or None,
        "requestContext": {"http": {"method": method, "path": parts.path or "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "127.0.0.1"},
                           "domainName": host, "requestId": uuid.uuid4().hex, "stage": "$default"},
        "body": base64.b64encode(body).decode() if body else None, "isBase64Encoded": bool(body),
    }


def _problem(status: int, title: str, detail: str) -> dict[str, Any]:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return {"statusCode": status, "headers": {"Content-Type": "application/problem+json"}, "body": json.dumps(body)}


def _read_chunked(rfile: Any, limit: int) -> bytes:
    """A ``Transfer-Encoding: chunked`` body (RFC 9112 section 7.1), at most ``limit`` bytes; trailers dropped."""
    out = bytearray()
    while True:
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if len(line) > _MAX_CHUNK_LINE or not line.endswith(b"\n"):
            raise _FramingError(400, "malformed chunk size line")
        size_text = line.split(b";", 1)[0].strip()
        if not size_text or any(c not in b"0123456789abcdefABCDEF" for c in size_text):
            raise _FramingError(400, "malformed chunk size")
        size = int(size_text, 16)
        if size == 0:
            break
        if len(out) + size > limit:
            raise _FramingError(413, f"the body must be at most {limit} bytes")
        data = rfile.read(size)
        if len(data) != size or rfile.readline(3) not in (b"\r\n", b"\n"):
            raise _FramingError(400, "truncated chunk")
        out += data
    for _ in range(100):  # trailer section, ended by an empty line
        line = rfile.readline(_MAX_CHUNK_LINE + 1)
        if line in (b"\r\n", b"\n", b""):
            return bytes(out)
    raise _FramingError(400, "too many trailer fields")


def _read_body(headers: Any, rfile: Any) -> tuple[bytes, bool]:
    """(body, close the connection after): Content-Length or chunked framing, bounded."""
    encoding = (headers.get("Transfer-Encoding") or "").strip().lower()
    if encoding:
        if encoding != "chunked":
            raise _FramingError(501, f"Transfer-Encoding {encoding!r} is not supported; use chunked")
        # RFC 9112 6.1: Transfer-Encoding wins over Content-Length, and such a connection is not reused.
        return _read_chunked(rfile, MAX_REQUEST_BYTES), True
    length = headers.get("Content-Length")
    if not length:
        return b"", False
    if not length.strip().isdigit():
        raise _FramingError(400, "Content-Length must be a non-negative integer")
    size = int(length)
    if size > MAX_REQUEST_BYTES:
        raise _FramingError(413, f"the body must be at most {MAX_REQUEST_BYTES} bytes")
    return rfile.read(size), False


class _Handler(BaseHTTPRequestHandler):
    """One request -> one payload 2.0 event -> ``handle_event``; ``app`` and ``public_host`` set per server."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are two writes: Nagle would hold the body for an ACK
    server_version = "genai-fleet-local-api"
    app: ApiApp
    public_host: str

    def __getattr__(self, name: str) -> Any:
        # Every method token (TRACE, CONNECT, made-up ones) goes to the app, which answers 405 + Allow.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        try:
            body, close = _read_body(self.headers, self.rfile)
        except _FramingError as exc:
            self._reply(_problem(exc.status, HTTPStatus(exc.status).phrase, exc.detail), close=True)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        # Links in answers name this server, never what the client claims (Host, X-Forwarded-*).
        headers["host"] = self.public_host
        headers["x-forwarded-proto"] = "http"
        for name in ("x-forwarded-host", "x-forwarded-for", "forwarded", "transfer-encoding"):
            headers.pop(name, None)
        if sse.wants_stream(self.command, self.path, headers):
            self._stream(headers)
            return
        self._reply(handle_event(_event(self.command, self.path, headers, body, self.public_host), self.app),
                    close=close)

    def _stream(self, headers: dict[str, str]) -> None:
        """``Accept: text/event-stream`` on a job's events: Server-Sent Events (fleetdev/local/sse.py)."""
        def start(status: int, extra: dict[str, str]) -> None:
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Connection", "close")  # no length: the stream ends with the connection
            self.close_connection = True
            self.end_headers()

        def write(data: bytes) -> None:
            self.wfile.write(data)
            self.wfile.flush()

        try:
            sse.stream(self.path, headers,
                       lambda target: handle_event(_event("GET", target, headers, b"", self.public_host), self.app),
                       start, write, lambda result: self._reply(result))
        except (BrokenPipeError, ConnectionResetError):
            log.debug("event stream client went away")
        self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """http.server's own errors (bad request line, header too long) as problem JSON, not HTML."""
        if self.request_version == "HTTP/0.9":  # an unparsable request line: answer with a real status line
            self.request_version = self.protocol_version
        try:
            phrase = HTTPStatus(code).phrase
        except ValueError:
            phrase = "Error"
        self._reply(_problem(code, phrase, explain or message or phrase), close=True)

    def _reply(self, result: dict[str, Any], close: bool = False) -> None:
        payload = result.get("body") or ""
        data = base64.b64decode(payload) if result.get("isBase64Encoded") else payload.encode()
        self.send_response(int(result["statusCode"]))
        for name, value in (result.get("headers") or {}).items():
            self.send_header(name, str(value))
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        log.debug("%s " + format, self.address_string(), *args)


def _handler_class(app: ApiApp, public_host: str) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"app": app, "public_host": public_host})


class LocalApiServer:
    """``with LocalApiServer(app) as server: server.url``; port 0 picks a free port."""

    def __init__(self, app: ApiApp, host: str = "127.0.0.1", port: int = 0, public_host: str | None = None):
        """``public_host`` (``host:port``) is what returned links name; default: the bound address."""
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(app, ""))
        self.httpd.daemon_threads = True
        bound_host, bound_port = self.httpd.server_address[:2]
        self.public_host = public_host or f"{bound_host}:{bound_port}"
        self.httpd.RequestHandlerClass = _handler_class(app, self.public_host)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalApiServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="local-api", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> LocalApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the job API locally (same handler as Lambda).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    configure("INFO", component="local-api")  # the agent's JSON lines (a %-format "JSON" breaks on a quote)
    server = LocalApiServer(build_app(ApiConfig.from_env()), args.host, args.port)
    log.info("local API on %s", server.url)
    server.httpd.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
