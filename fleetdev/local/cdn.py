"""The CDN stand-in of local mode: serves the outputs bucket over plain HTTP, like CloudFront would.

GET /<key> reads the object from the local S3 endpoint and returns it with its content type; only
GET and HEAD, only the one bucket, nothing cached.
"""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from botocore.exceptions import ClientError

log = logging.getLogger(__name__)


class CdnServer:
    """Threaded HTTP server in front of one bucket; ``base_url`` is what the agents put in job records."""

    def __init__(self, s3_client: Any, bucket: str, host: str = "127.0.0.1", port: int = 0):
        handler = _make_handler(s3_client, bucket)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="cdn", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> CdnServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _make_handler(s3_client: Any, bucket: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "genai-fleet-local-cdn"

        def do_GET(self) -> None:
            self._serve(body=True)

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def _serve(self, body: bool) -> None:
            key = unquote(urlsplit(self.path).path.lstrip("/"))
            if not key or ".." in key.split("/"):
                self.send_error(404)
                return
            try:
                obj = s3_client.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                self.send_error(404 if code in ("NoSuchKey", "404") else 502)
                return
            data = obj["Body"].read()
            self.send_response(200)
            self.send_header("Content-Type", obj.get("ContentType") or "application/octet-stream")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "public, max-age=86400")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("cdn: " + fmt, *args)

    return Handler
