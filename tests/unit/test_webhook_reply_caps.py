"""A receiver's reply cannot hold a webhook sender (issue 28, finding 3): the whole try is capped in time
(httpx's timeouts apply per read), the reply body is streamed and read up to a size cap only, such a reply
trips the endpoint's breaker, and one host never holds more than its share of the senders."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from runtime.functions.webhook_dispatch import EndpointBreaker, SenderHandler
from runtime.functions.webhook_events import Delivery
from runtime.functions.webhooks import MAX_REPLY_BYTES, WebhookSender
from runtime.jobs.output_links import OutputLinks

LINKS = OutputLinks("https://cdn.example.com")  # public links (issue 43: made at send time)

JOB = {"id": "j", "status": "succeeded"}


def _public(host: str, port: int) -> list[str]:
    return ["93.184.216.34"]


def test_a_huge_reply_is_read_up_to_the_cap_only():
    chunks_read = []

    def body() -> Iterator[bytes]:
        for i in range(160):  # 10 MiB in 64 KiB chunks
            chunks_read.append(i)
            yield b"x" * 65536

    sender = WebhookSender("s", max_attempts=1, resolver=_public,
                           transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body())))
    result, retry = sender.try_once("https://hooks.example.com/h", "completed", JOB, "j.completed")
    assert result.delivered and not retry
    assert result.misbehaved == f"reply body over {MAX_REPLY_BYTES} bytes" and result.trips_breaker
    assert len(chunks_read) <= MAX_REPLY_BYTES // 65536 + 1


def test_a_slow_reply_is_cut_at_the_whole_try_deadline():
    now = [0.0]

    def body() -> Iterator[bytes]:
        for _ in range(1000):
            now[0] += 1.0  # each chunk arrives a second later: within any per-read timeout
            yield b"y" * 1000

    sender = WebhookSender("s", max_attempts=1, resolver=_public, timeout_s=5.0, monotonic=lambda: now[0],
                           transport=httpx.MockTransport(lambda r: httpx.Response(503, content=body())))
    result, retry = sender.try_once("https://hooks.example.com/h", "completed", JOB, "j.completed")
    assert not result.delivered and retry and result.status_code == 503
    assert result.misbehaved == "reply took over 5s" and now[0] <= 7.0


class _Trickler:
    """A loopback receiver that sends its answer one byte at a time, forever (headers or body)."""

    def __init__(self, headers_first: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.port = self.sock.getsockname()[1]
        self.headers_first = headers_first
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        conn.recv(65536)
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 10485760\r\n\r\n"
        try:
            if self.headers_first:
                conn.sendall(head)
                head = b""
            for byte in (head + b"z" * 10_000_000):
                if self.stop.wait(0.05):
                    break
                conn.sendall(bytes([byte]) if isinstance(byte, int) else byte)
        except OSError:
            pass
        finally:
            conn.close()

    def close(self) -> None:
        self.stop.set()
        self.sock.close()


@pytest.mark.parametrize("headers_first", [True, False], ids=["slow-body", "slow-headers"])
def test_a_trickling_receiver_holds_a_real_try_for_the_cap_only(headers_first):
    receiver = _Trickler(headers_first)
    sender = WebhookSender("s", max_attempts=1, allow_loopback=True, timeout_s=1.0)
    try:
        t0 = time.monotonic()
        result, _ = sender.try_once(f"http://127.0.0.1:{receiver.port}/h", "completed", JOB, "j.completed")
        took = time.monotonic() - t0
    finally:
        receiver.close()
        sender.close()
    assert result.trips_breaker
    assert took < 4.0, f"a 1 s try took {took:.1f}s"  # each byte comes within any per-read timeout


def _record(url: str, mid: str) -> dict[str, Any]:
    d = Delivery(url=url, event="completed", webhook_id=f"{mid}.completed", job=JOB, at=1.0)
    return {"messageId": mid, "receiptHandle": f"rh-{mid}", "body": d.to_json(),
            "attributes": {"ApproximateReceiveCount": "1"}}


class _SQS:
    def __init__(self) -> None:
        self.visibility: list[tuple[str, int]] = []

    def change_message_visibility(self, QueueUrl, ReceiptHandle, VisibilityTimeout):  # noqa: N803
        self.visibility.append((ReceiptHandle, VisibilityTimeout))


def test_an_oversized_reply_opens_the_breaker():
    tries = []

    def handler(request: httpx.Request) -> httpx.Response:
        tries.append(request.url.path)
        return httpx.Response(200, content=b"x" * (MAX_REPLY_BYTES + 1))

    sender = WebhookSender("s", max_attempts=1, resolver=_public, transport=httpx.MockTransport(handler))
    handler_ = SenderHandler(sender, _SQS(), "q", LINKS, breaker=EndpointBreaker(open_s=30, clock=lambda: 0.0))
    first = handler_.handle({"Records": [_record("https://big.example.com/h", "a")]})
    assert first["batchItemFailures"] == []  # delivered: the receiver answered 200
    second = handler_.handle({"Records": [_record("https://big.example.com/h", "b")]})
    assert second["batchItemFailures"] == [{"itemIdentifier": "b"}] and tries == ["/h"]  # waits in the queue


def test_one_host_holds_at_most_its_share_of_the_senders():
    release, entered = threading.Event(), []

    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Host"] == "slow.example.com":  # the URL names the pinned address
            entered.append(1)
            release.wait(10)
        return httpx.Response(204)

    sender = WebhookSender("s", max_attempts=1, resolver=_public, transport=httpx.MockTransport(handler))
    sqs = _SQS()
    handler_ = SenderHandler(sender, sqs, "q", LINKS, breaker=EndpointBreaker(max_in_flight=2))
    threads = [threading.Thread(target=handler_.handle, args=({"Records": [_record("https://slow.example.com/h",
                                                                                     f"s{i}")]},))
               for i in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    while len(entered) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        third = handler_.handle({"Records": [_record("https://slow.example.com/h", "s2")]})
        healthy = handler_.handle({"Records": [_record("https://ok.example.com/h", "ok")]})
    finally:
        release.set()
        for t in threads:
            t.join(10)
    assert third["batchItemFailures"] == [{"itemIdentifier": "s2"}]  # deferred, no third sender held
    assert healthy["batchItemFailures"] == [] and len(entered) == 2
