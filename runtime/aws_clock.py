"""AWS's clock as seen from this process: the local clock plus an offset measured from responses' ``Date``.

Lease expiry is written by a worker (``now + lease``) and compared by the lease sweeper against its own
clock; a worker whose clock runs behind writes leases that look expired the moment they are written.
``AwsClock`` takes the worker's clock out of that comparison: every response of a client it is attached
to (botocore's ``after-call`` event) carries the server's ``Date`` (RFC 7231, whole seconds), the offset
is the median of the recent samples (``Date + 0.5`` minus the local time at the answer: the header
truncates, so the server's time was in ``[Date, Date + 1)``), and ``now()`` is local time plus that
offset, within about a second of the server's. The job store of the worker runs on ``now()``, and the
agent publishes ``|offset|`` as the ``ClockOffset`` metric (components/monitoring.py alarms on it).
Tolerance and how it is watched: docs/worker.md, "Clocks".
"""

from __future__ import annotations

import logging
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

log = logging.getLogger(__name__)

SAMPLES = 15  # the median of this many recent answers: one odd proxy or a slow answer does not move it
WARN_OFFSET_S = 5.0  # log once when the measured offset first exceeds this


class AwsClock:
    def __init__(self, clock: Callable[[], float] = time.time, samples: int = SAMPLES,
                 probe: Callable[[], object] | None = None) -> None:
        """``probe``: one cheap call through an attached client, made by ``now()`` while no answer has been
        seen yet, so that the first lease a worker writes is already in AWS's time."""
        self._clock, self.probe = clock, probe
        self._samples: deque[float] = deque(maxlen=samples)
        self._lock = threading.Lock()
        self._offset = 0.0
        self._warned = False

    @property
    def offset(self) -> float:
        """Seconds to add to the local clock to read AWS's (0 until a ``Date`` header was seen)."""
        return self._offset

    def now(self) -> float:
        if not self._samples and self.probe is not None:
            try:
                self.probe()
            except Exception as exc:  # noqa: BLE001 - measured on a later answer; the caller's call goes on
                log.debug("clock probe failed: %s", exc)
        return self._clock() + self._offset

    def attach(self, client: Any) -> Any:
        """Measure on every answer of this boto3 client; returns the client."""
        client.meta.events.register("after-call", self._after_call)
        return client

    def observe(self, date_header: str | None, received_at: float | None = None) -> None:
        """One answer's ``Date`` header, heard at local time ``received_at`` (default: now)."""
        if not date_header:
            return
        try:
            server = parsedate_to_datetime(date_header).timestamp() + 0.5
        except (TypeError, ValueError):
            return
        local = self._clock() if received_at is None else received_at
        with self._lock:
            self._samples.append(server - local)
            self._offset = statistics.median(self._samples)
            offset = self._offset
        if abs(offset) > WARN_OFFSET_S and not self._warned:
            self._warned = True
            log.warning("this host's clock is %.1f s %s AWS's (from response Date headers); lease times are "
                        "corrected by it, fix the host's time sync", abs(offset), "behind" if offset > 0 else "ahead")

    def _after_call(self, http_response: Any = None, **_: Any) -> None:
        headers = getattr(http_response, "headers", None) or {}
        self.observe(headers.get("Date") or headers.get("date"))
