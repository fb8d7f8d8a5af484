"""The CDN stand-in of local mode: serves the outputs bucket over plain HTTP, like CloudFront would.

GET /<key> reads the object from the local S3 endpoint and returns it with its content type; only
GET and HEAD, only the one bucket, nothing cached.

Range requests are answered as CloudFront answers them for an S3 origin (players seek in a video this way):
every answer says ``Accept-Ranges: bytes``; one satisfiable byte range (``bytes=a-b``, ``bytes=a-``, the
suffix ``bytes=-n``) gets ``206`` with ``Content-Range: bytes a-b/size`` and those bytes; a range that starts
past the end gets ``416`` with ``Content-Range: bytes */size``; a header CloudFront does not honour (not
``bytes=``, malformed, descending, or several ranges, which S3 does not serve) gets the whole object, ``200``.

Signed URLs (issue 43): given a ``SignedUrlVerifier`` (the key group's public keys), every request must carry
a valid, unexpired signature for the very URL requested, as CloudFront checks them
(fleetdev/local/cdn_signatures.py); otherwise 403, before the bucket is read. None: public, as
``outputAccess: public``.
"""

from __future__ import annotations

import logging
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from botocore.exceptions import ClientError

from fleetdev.local.cdn_signatures import SIGNING_PARAMETERS, SignedUrlVerifier

log = logging.getLogger(__name__)


class CdnServer:
    """Threaded HTTP server in front of one bucket; ``base_url`` is what the agents put in job records."""

    def __init__(self, s3_client: Any, bucket: str, host: str = "127.0.0.1", port: int = 0,
                 verifier: SignedUrlVerifier | None = None):
        handler = _make_handler(s3_client, bucket, verifier)
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


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def byte_range(header: str | None, size: int) -> tuple[int, tuple[int, int] | None]:
    """(status, (first, last) inclusive or None) for a ``Range`` header on an object of ``size`` bytes."""
    match = _RANGE.match((header or "").strip().replace(" ", ""))
    if match is None or size == 0:  # no header, another unit, several ranges, malformed: the whole object
        return 200, None
    first, last = match.groups()
    if not first and not last:
        return 200, None
    if not first:  # suffix: the last n bytes
        n = int(last)
        return (416, None) if n == 0 else (206, (max(0, size - n), size - 1))
    start = int(first)
    end = size - 1 if not last else min(int(last), size - 1)
    if last and int(last) < start:  # descending: not a valid range, so not honoured
        return 200, None
    if start >= size:
        return 416, None
    return 206, (start, end)


def _resource(host: str, path: str) -> tuple[str, dict[str, str]]:
    """(the URL a signature must cover: the request's without the signing parameters, its signing parameters)."""
    parts = urlsplit(path)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    signing = {k: v for k, v in pairs if k in SIGNING_PARAMETERS}
    rest = urlencode([(k, v) for k, v in pairs if k not in SIGNING_PARAMETERS])
    return f"http://{host}{parts.path}" + (f"?{rest}" if rest else ""), signing


def _make_handler(s3_client: Any, bucket: str, verifier: SignedUrlVerifier | None) -> type[BaseHTTPRequestHandler]:
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
            if verifier is not None:
                resource, signing = _resource(self.headers.get("Host") or "", self.path)
                refusal = verifier.refusal(resource, signing)
                if refusal is not None:
                    log.info("cdn: 403 for %s: %s", urlsplit(self.path).path, refusal)
                    self.send_error(403, "Access Denied")
                    return
            try:
                obj = s3_client.get_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                self.send_error(404 if code in ("NoSuchKey", "404") else 502)
                return
            data = obj["Body"].read()
            status, span = byte_range(self.headers.get("Range"), len(data))
            self.send_response(status)
            self.send_header("Content-Type", obj.get("ContentType") or "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Cache-Control", "public, max-age=86400")
            if status == 416:
                self.send_header("Content-Range", f"bytes */{len(data)}")
                data = b""
            elif span is not None:
                self.send_header("Content-Range", f"bytes {span[0]}-{span[1]}/{len(data)}")
                data = data[span[0]:span[1] + 1]
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                self.wfile.write(data)

        def log_message(self, fmt: str, *args: Any) -> None:
            log.debug("cdn: " + fmt, *args)

    return Handler
