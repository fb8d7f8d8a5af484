"""The agent's health signal: systemd's watchdog, a heartbeat file and a heartbeat metric.

A thread asks ``probe()`` every few seconds. While it answers True the thread pings systemd
(``WATCHDOG=1`` on ``$NOTIFY_SOCKET``; the unit has ``Type=notify`` and ``WatchdogSec=``), touches the
heartbeat file and, once a minute, counts ``AgentHeartbeat``. When the agent hangs, the pings stop,
systemd kills and restarts it; when it keeps failing the unit's start limit puts it in the failed state
and ``OnFailure=genai-worker-unhealthy.service`` marks the instance unhealthy (``genai-worker
mark-unhealthy``), so the Auto Scaling group replaces it. No ELB or custom poller is needed: the
instance judges its own agent, and a dead instance stops reporting ``AgentHeartbeat`` too.

``notify`` speaks the sd_notify datagram protocol directly (a few lines; no extra dependency).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


def notify(message: str) -> bool:
    """Send one sd_notify message (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``); False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify %s failed: %s", message, exc)
        return False
    return True


def watchdog_interval(default: float = 30.0) -> float:
    """Half of systemd's watchdog timeout (``WATCHDOG_USEC``), the interval sd_watchdog_enabled(3) advises."""
    usec = os.environ.get("WATCHDOG_USEC")
    try:
        return max(1.0, int(usec) / 2_000_000) if usec else default
    except ValueError:
        return default


class Heartbeat:
    """Pings the watchdog and touches ``file`` while ``probe()`` is True; ``beat`` counts the metric."""

    def __init__(self, probe: Callable[[], bool], *, file: str | None = None,
                 beat: Callable[[], None] | None = None, interval: float | None = None,
                 metric_every: float = 60.0) -> None:
        self.probe = probe
        self.file = Path(file) if file else None
        self.beat = beat
        self.interval = interval or min(watchdog_interval(), 15.0)
        self.metric_every = metric_every
        self.beats = 0
        self._last_metric = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def once(self) -> bool:
        """One round: True when the agent was healthy and the heartbeat was sent."""
        try:
            healthy = bool(self.probe())
        except Exception:
            log.exception("health probe failed")
            healthy = False
        if not healthy:
            log.error("agent unhealthy: heartbeat withheld")
            return False
        notify("WATCHDOG=1")
        if self.file is not None:
            try:
                self.file.parent.mkdir(parents=True, exist_ok=True)
                self.file.write_text(f"{time.time():.0f}\n")
            except OSError as exc:
                log.warning("heartbeat file %s not written: %s", self.file, exc)
        if self.beat is not None and time.monotonic() - self._last_metric >= self.metric_every:
            self._last_metric = time.monotonic()
            self.beat()
        self.beats += 1
        return True

    def _run(self) -> None:
        while not self._stop.is_set():
            self.once()
            self._stop.wait(self.interval)
