"""The local HTTP server in front of the handler: every method answered as JSON, chunked bodies read (never
run as a second request), and links that name the server, not what the client claims (issue 16, finding 8).
"""

from __future__ import annotations

import json
import socket

import pytest

from fleetdev.local_server import LocalApiServer
from runtime.api.auth import generate_key
from runtime.api.handler import ApiConfig, build_app

pytestmark = pytest.mark.integration
KEY, _ = generate_key("local")
JOB = b'{"model":"sdxl-base-1.0","inputs":{"prompt":"a lighthouse"}}'


@pytest.fixture
def server(moto_endpoint, job_table, sqs_queue):
    cfg = ApiConfig(job_table=job_table, queue_url=sqs_queue, api_keys=(KEY,), endpoint_url=moto_endpoint,
                    region="us-east-1")
    with LocalApiServer(build_app(cfg)) as srv:
        yield srv


def _exchange(srv: LocalApiServer, raw: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send raw bytes, read until the server closes or goes quiet; every response parsed in order."""
    host, port = srv.httpd.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    responses = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        responses.append((int(lines[0].split()[1]), headers, rest[:length]))
        data = rest[length:]
    return responses


def _request(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", *(f"{k}: {v}" for k, v in {"Host": "127.0.0.1", **headers}.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_trace_and_unknown_methods_get_json_405_with_allow(server):
    for method in ("TRACE", "CONNECT", "BREW"):
        [(status, headers, body)] = _exchange(server, _request(method, "/v1/jobs", {"Connection": "close"}))
        assert status == 405 and headers["allow"] == "GET, POST", method  # GET lists jobs (issue 39)
        assert headers["content-type"] == "application/problem+json" and json.loads(body)["status"] == 405


def test_a_chunked_body_is_read_as_the_body_and_never_run_as_a_second_request(server):
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(JOB), JOB)
    smuggled = chunked + _request("GET", "/v1/health", {})  # what a desynced server would run next
    raw = _request("POST", "/v1/jobs", {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json",
                                        "Transfer-Encoding": "chunked", "Content-Length": "0"}, smuggled)
    responses = _exchange(server, raw)
    assert [status for status, _, _ in responses] == [202], responses
    assert json.loads(responses[0][2])["inputs"]["prompt"] == "a lighthouse"
    assert responses[0][1]["connection"] == "close"
    split = b"5\r\n" + JOB[:5] + b"\r\n" + b"%x;ext=1\r\n" % (len(JOB) - 5) + JOB[5:] + b"\r\n0\r\nX-T: 1\r\n\r\n"
    [(status, _, _)] = _exchange(server, _request("POST", "/v1/jobs", {
        "Authorization": f"Bearer {KEY}", "Transfer-Encoding": "chunked", "Connection": "close"}, split))
    assert status == 202  # chunk extensions and trailers are allowed by RFC 9112


@pytest.mark.parametrize("body, encoding, status", [
    (b"zz\r\n{}\r\n0\r\n\r\n", "chunked", 400),  # not a hex size
    (b"10\r\n{}", "chunked", 400),  # truncated
    (b"{}", "gzip", 501),
    (b"fffff\r\n", "chunked", 413),  # over the local limit
])
def test_bad_framing_is_a_json_error_and_closes_the_connection(server, body, encoding, status):
    [(got, headers, payload)] = _exchange(server, _request("POST", "/v1/jobs", {
        "Authorization": f"Bearer {KEY}", "Transfer-Encoding": encoding}, body))
    assert got == status and headers["connection"] == "close"
    assert json.loads(payload)["status"] == status


def test_http_server_errors_are_json_not_html(server):
    [(status, headers, body)] = _exchange(server, b"GET / HTTP/x.y\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/problem+json"
    assert json.loads(body)["status"] == 400


def test_links_name_the_server_not_the_clients_host_or_proto(server):
    [(status, _, body)] = _exchange(server, _request("POST", "/v1/jobs", {
        "Authorization": f"Bearer {KEY}", "Content-Type": "application/json", "Content-Length": str(len(JOB)),
        "Host": "evil.example", "X-Forwarded-Proto": "https", "X-Forwarded-Host": "evil.example",
        "Connection": "close"}, JOB))
    assert status == 202
    urls = json.loads(body)["urls"]
    assert urls["get"].startswith(server.url + "/v1/jobs/") and urls["cancel"].startswith(server.url)
