"""A DynamoDB client wrapper that makes each call atomic, as DynamoDB is and moto's server is not.

moto 5.2.5 serves requests on threads without a lock around its table state: two concurrent conditional
UpdateItem calls can both pass their condition (seen here: two replays both claiming one send lease).
DynamoDB evaluates each request's condition and write atomically. Racing tests wrap their client in
``AtomicCalls`` so that each request is atomic while the code under test still races between requests
(a check-then-act across two calls still loses; a conditional write does not).
"""

from __future__ import annotations

import threading
from typing import Any

_LOCK = threading.Lock()  # one for all wrappers: they may point at the same table


class AtomicCalls:
    def __init__(self, client: Any):
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        if not callable(attr) or name.startswith("_"):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            with _LOCK:
                return attr(*args, **kwargs)

        return call
