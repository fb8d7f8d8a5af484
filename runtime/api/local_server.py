"""A small threaded HTTP server that runs the Lambda handler's ``handle_event`` for local mode and tests.

Each HTTP request becomes an API Gateway HTTP API (payload 2.0) event with no authorizer context, so
the app authenticates from the headers itself, exactly as the code path in Lambda does without an
authorizer. Bind to loopback (the default); it is not meant to face a network.

    python -m runtime.api.local_server --port 8080      # reads the GENAI_* variables (handler.py)
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from runtime.api.app import ApiApp
from runtime.api.handler import ApiConfig, build_app, handle_event

log = logging.getLogger(__name__)
MAX_REQUEST_BYTES = 1_000_000


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


def _handler_class(app: ApiApp) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "genai-fleet-local-api"

        def _serve(self) -> None:
            length = self.headers.get("Content-Length")
            try:
                size = int(length) if length else 0
            except ValueError:
                size = -1
            if size < 0 or size > MAX_REQUEST_BYTES:
                self._reply({"statusCode": 413 if size > 0 else 400, "headers": {"Content-Type": "application/json"},
                             "body": json.dumps({"title": "bad Content-Length"})}, close=True)
                return
            body = self.rfile.read(size) if size else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            host = headers.get("host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
            headers.setdefault("x-forwarded-proto", "http")
            self._reply(handle_event(_event(self.command, self.path, headers, body, host), app))

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

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _serve  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
            log.debug("%s " + format, self.address_string(), *args)

    return Handler


class LocalApiServer:
    """``with LocalApiServer(app) as server: server.url``; port 0 picks a free port."""

    def __init__(self, app: ApiApp, host: str = "127.0.0.1", port: int = 0):
        self.app = app
        self.httpd = ThreadingHTTPServer((host, port), _handler_class(app))
        self.httpd.daemon_threads = True
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
    logging.basicConfig(level=logging.INFO, format='{"level":"%(levelname)s","logger":"%(name)s","msg":"%(message)s"}')
    server = LocalApiServer(build_app(ApiConfig.from_env()), args.host, args.port)
    log.info("local API on %s", server.url)
    server.httpd.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
