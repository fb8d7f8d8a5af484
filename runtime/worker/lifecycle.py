"""Instance lifecycle: the IMDSv2 watcher and the Auto Scaling calls around it.

``LifecycleWatcher`` polls IMDS every ``poll_seconds`` on its own thread and reports each notice once:

- ``spot``: ``spot/instance-action`` appeared (deadline = its ``time``, about two minutes ahead);
- ``terminating``: ``autoscaling/target-lifecycle-state`` became ``Terminated`` (scale-in, rebalance
  replacement, instance refresh) or ``Warmed:*`` (going back to a warm pool);
- ``rebalance``: ``events/recommendations/rebalance`` appeared (elevated interruption risk).

Spot and terminating notices make the agent drain (stop pulling; finish the running job if it fits
the time left, else hand it back), then complete the terminating lifecycle action. A rebalance
recommendation is only a risk signal: the agent counts it and keeps working (capacity rebalancing
launches a replacement; the old instance drains when its terminating hook or spot notice comes).
``Lifecycle`` wraps the Auto Scaling calls: complete the launching action (CONTINUE, or ABANDON after
a fatal boot error), the terminating action, heartbeats, scale-in protection (deduplicated: only state
changes call the API), mark the instance unhealthy. AWS errors are logged, never fatal: a missing
action (agent restart, no hook configured) is normal. ``launching_heartbeats()`` heartbeats the launching
action every ``LAUNCHING_HEARTBEAT_SECONDS`` while a block runs (boot's hot-model downloads: a cold
boot may download for longer than the hook's heartbeat timeout, whose default result is ABANDON).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runtime.worker.aws import AutoScaling, AWSCallError, LifecycleActionNotFound
from runtime.worker.imds import IMDSClient, IMDSError

log = logging.getLogger(__name__)

SPOT, TERMINATING, REBALANCE = "spot", "terminating", "rebalance"
# Well inside any launching hook's heartbeat timeout (the stack sets 10+ minutes; AWS's minimum is 30 s).
LAUNCHING_HEARTBEAT_SECONDS = 60.0


@dataclass(frozen=True)
class Notice:
    kind: str  # spot | terminating | rebalance
    deadline: float | None  # epoch seconds by which the instance may be gone; None when unknown
    detail: str = ""

    def seconds_left(self, now: float | None = None) -> float | None:
        return None if self.deadline is None else self.deadline - (now or time.time())


def _parse_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


class LifecycleWatcher:
    def __init__(self, imds: IMDSClient, on_notice: Callable[[Notice], None], poll_seconds: float = 5.0) -> None:
        self.imds = imds
        self.on_notice = on_notice
        self.poll_seconds = poll_seconds
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lifecycle-watcher", daemon=True)

    def start(self) -> LifecycleWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def poll_once(self) -> list[Notice]:
        """Read IMDS once; report (and return) notices not reported before."""
        found = []
        action = self.imds.spot_instance_action()
        if action:
            found.append(Notice(SPOT, _parse_time(action.get("time")), str(action.get("action", ""))))
        state = self.imds.target_lifecycle_state()
        if state and (state == "Terminated" or state.startswith("Warmed:")):
            found.append(Notice(TERMINATING, None, state))
        rebalance = self.imds.rebalance_recommendation()
        if rebalance:
            found.append(Notice(REBALANCE, None, str(rebalance.get("noticeTime", ""))))
        new = [n for n in found if n.kind not in self.seen]
        for notice in new:
            self.seen.add(notice.kind)
            log.warning("lifecycle notice %s (%s)", notice.kind, notice.detail,
                        extra={"notice": notice.kind, "deadline": notice.deadline})
            self.on_notice(notice)
        return new

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except IMDSError as exc:
                log.warning("IMDS poll failed: %s", exc)
            self._stop.wait(self.poll_seconds)


class Lifecycle:
    """Auto Scaling calls for this instance (all no-ops without a group)."""

    def __init__(self, autoscaling: AutoScaling, instance_id: str, group: str | None,
                 launching_hook: str | None, terminating_hook: str | None) -> None:
        self.autoscaling = autoscaling
        self.instance_id = instance_id
        self.group = group
        self.launching_hook = launching_hook
        self.terminating_hook = terminating_hook
        self.protected: bool | None = None
        self.completed: set[str] = set()

    def _complete(self, hook: str | None, which: str, result: str = "CONTINUE") -> bool:
        if not hook or not self.group or which in self.completed:
            return False
        try:
            self.autoscaling.complete_lifecycle_action(hook, self.group, self.instance_id, result)
        except LifecycleActionNotFound as exc:
            log.info("no %s lifecycle action pending: %s", which, exc)
            return False
        except AWSCallError as exc:
            log.error("completing the %s lifecycle action failed: %s", which, exc)
            return False
        self.completed.add(which)
        log.info("%s lifecycle action completed (%s)", which, result, extra={"hook": hook, "group": self.group})
        return True

    def complete_launching(self) -> bool:
        return self._complete(self.launching_hook, "launching")

    def abandon_launching(self) -> bool:
        """Fatal boot error: tell the group now (ABANDON terminates and replaces the instance)."""
        return self._complete(self.launching_hook, "launching", "ABANDON")

    def mark_unhealthy(self, reason: str) -> bool:
        """The agent cannot serve: the group replaces an InService instance marked Unhealthy."""
        try:
            self.autoscaling.set_instance_health(self.instance_id, False)
        except AWSCallError as exc:
            log.error("marking the instance unhealthy failed: %s", exc)
            return False
        log.error("instance marked unhealthy: %s", reason, extra={"group": self.group})
        return True

    def complete_terminating(self) -> bool:
        return self._complete(self.terminating_hook, "terminating")

    def heartbeat_launching(self) -> None:
        """Restart the launching hook's heartbeat timeout (until the launching action is completed)."""
        if self.launching_hook and self.group and "launching" not in self.completed:
            try:
                self.autoscaling.record_lifecycle_action_heartbeat(self.launching_hook, self.group,
                                                                   self.instance_id)
            except AWSCallError as exc:
                log.info("launching heartbeat not recorded: %s", exc)

    @contextmanager
    def launching_heartbeats(self, every_s: float | None = None) -> Iterator[None]:
        """Heartbeat the launching action every ``every_s`` seconds (default ``LAUNCHING_HEARTBEAT_SECONDS``)
        on a thread while the block runs."""
        if not self.launching_hook or not self.group:
            yield
            return
        every_s = LAUNCHING_HEARTBEAT_SECONDS if every_s is None else every_s
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(every_s):
                self.heartbeat_launching()

        thread = threading.Thread(target=beat, name="launching-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def heartbeat_terminating(self) -> None:
        if self.terminating_hook and self.group:
            try:
                self.autoscaling.record_lifecycle_action_heartbeat(self.terminating_hook, self.group,
                                                                   self.instance_id)
            except AWSCallError as exc:
                log.info("terminating heartbeat not recorded: %s", exc)

    def protect(self, protected: bool) -> None:
        """Scale-in protection on while jobs run; calls the API only when the state changes."""
        if not self.group or self.protected is protected:
            return
        try:
            self.autoscaling.set_instance_protection(self.group, self.instance_id, protected)
            self.protected = protected
        except AWSCallError as exc:
            log.warning("scale-in protection %s failed: %s", "on" if protected else "off", exc)
