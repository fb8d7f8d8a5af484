"""Local mode's AWS endpoint: moto's server with every DynamoDB request atomic, as DynamoDB's are.

moto 5.2.5 serves requests on threads with no lock around a table: two concurrent conditional
UpdateItem calls can both pass their condition, and ``TransactWriteItems`` deep-copies the table and
restores that copy when any part fails, wiping every write other threads made meanwhile (an accepted
job lost: issue 28). DynamoDB evaluates each request's conditions and writes atomically, and fencing,
idempotency and the send lease all rest on that. ``AtomicDynamoDB`` is a WSGI middleware that runs each
DynamoDB and DynamoDB Streams request, body included, under one lock; S3, SQS and SSM stay concurrent.
``tests/atomic_ddb.py`` does the same per client for the in-process ``ThreadedMotoServer`` of the tests.

    python -m fleetdev.local.moto_server -H 127.0.0.1 -p 5000
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable
from typing import Any

# Requests are routed by this header's prefix (botocore's JSON protocol): DynamoDB_20120810.PutItem, ...
ATOMIC_TARGETS = ("DynamoDB_", "DynamoDBStreams_")

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class AtomicDynamoDB:
    """Serialise DynamoDB requests: one at a time, from the request's first byte to the response's last."""

    def __init__(self, app: WsgiApp) -> None:
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not str(environ.get("HTTP_X_AMZ_TARGET", "")).startswith(ATOMIC_TARGETS):
            return self.app(environ, start_response)
        with self.lock:
            result = self.app(environ, start_response)
            try:
                return [b"".join(result)]  # the whole answer is made inside the lock
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()


def app() -> AtomicDynamoDB:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    return AtomicDynamoDB(DomainDispatcherApplication(create_backend_app))


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import run_simple

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))  # moto.server does the same: URLs it makes name it
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(args.host, args.port, app(), threaded=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
