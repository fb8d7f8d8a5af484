"""Boot: the backend warms up (loads and compiles) the first hot model before the launching lifecycle action
completes, and a warm-up that fails is a boot warning, not a failed boot."""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from types import SimpleNamespace

from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.worker import lifecycle as lifecycle_module
from runtime.worker.aws import RecordingAutoScaling
from runtime.worker.boot import boot
from runtime.worker.lifecycle import Lifecycle


class Recorder:
    def __init__(self, calls: list, fail: bool = False, report: dict | None = None):
        self.calls, self.fail, self.report = calls, fail, report or {}

    def wait_ready(self, timeout):
        self.calls.append(("wait_ready",))

    def warm_up(self, model_id, path):
        self.calls.append(("warm_up", model_id, path))
        if self.fail:
            raise BackendError("compile failed")
        return {"model": model_id, **self.report}

    def check(self):
        return {}


def _parts(calls: list, fail: bool = False, report: dict | None = None) -> dict:
    cache = SimpleNamespace(ensure=lambda model_id: SimpleNamespace(model_id=model_id, path=Path(f"/c/{model_id}"),
                                                                    hit=True))
    metrics = SimpleNamespace(counted=[], count=lambda name, **kw: metrics.counted.append((name, kw)),
                              emit=lambda *a: calls.append(("emit",)))
    return dict(hot_models=("sdxl", "sd15"), ready_timeout_s=5, model_cache=cache,
                backend=Recorder(calls, fail, report), metrics=metrics, worker_id="i-1",
                lifecycle=SimpleNamespace(complete_launching=lambda: calls.append(("complete",)),
                                          launching_heartbeats=contextlib.nullcontext))


def test_warm_up_of_the_first_hot_model_happens_before_the_launch_completes():
    calls: list = []
    boot(**_parts(calls))
    assert calls[:3] == [("wait_ready",), ("warm_up", "sdxl", Path("/c/sdxl")), ("complete",)]


def test_a_failed_warm_up_is_a_boot_warning_and_the_instance_still_joins():
    calls: list = []
    parts = _parts(calls, fail=True)
    boot(**parts)
    assert ("complete",) in calls
    assert any(name == m.BOOT_WARNINGS and kw["what"] == "warm-up" for name, kw in parts["metrics"].counted)


def test_a_skipped_cold_compile_is_a_boot_warning_and_a_warm_one_is_not():
    for skipped, expect in ((True, True), (False, False)):
        calls: list = []
        parts = _parts(calls, report={"cold_compile_skipped": skipped})
        boot(**parts)
        assert ("complete",) in calls
        warned = [kw for name, kw in parts["metrics"].counted if name == m.BOOT_WARNINGS]
        assert bool(warned) is expect and all(kw["what"] == "compile-cache-cold" for kw in warned)


class HeartbeatWatchingAutoScaling(RecordingAutoScaling):
    """Records every call and signals each launching heartbeat."""

    def __init__(self):
        super().__init__(group="genai-prod-ondemand")
        self.beat = threading.Event()

    def record_lifecycle_action_heartbeat(self, hook, group, instance_id):
        super().record_lifecycle_action_heartbeat(hook, group, instance_id)
        self.beat.set()


def test_the_launching_action_is_heartbeated_while_hot_models_download(monkeypatch):
    """A cold boot downloads the hot models before the launching action completes; the hook's default result
    is ABANDON, so a download longer than its heartbeat timeout lost the instance. The download here lasts
    until a heartbeat arrives (at most 10 s), so without heartbeats the assertions below fail."""
    monkeypatch.setattr(lifecycle_module, "LAUNCHING_HEARTBEAT_SECONDS", 0.01)
    autoscaling = HeartbeatWatchingAutoScaling()
    lifecycle = Lifecycle(autoscaling, "i-0abc", "genai-prod-ondemand", "genai-launching", "genai-terminating")
    seen_during_download = []

    def ensure(model_id):
        seen_during_download.append(autoscaling.beat.wait(10))
        return SimpleNamespace(model_id=model_id, path=Path(f"/c/{model_id}"), hit=False)

    calls: list = []
    boot(**{**_parts(calls), "model_cache": SimpleNamespace(ensure=ensure), "lifecycle": lifecycle})
    assert seen_during_download == [True, True]
    ops = [c["op"] for c in autoscaling.calls]
    assert ops[-1] == "complete_lifecycle_action" and "record_lifecycle_action_heartbeat" in ops
    beats = [c for c in autoscaling.calls if c["op"] == "record_lifecycle_action_heartbeat"]
    assert {(c["hook"], c["group"], c["instance_id"]) for c in beats} == {
        ("genai-launching", "genai-prod-ondemand", "i-0abc")}
    assert not any(t.name == "launching-heartbeat" for t in threading.enumerate())  # joined before completing


def test_no_heartbeat_thread_without_a_launching_hook():
    autoscaling = RecordingAutoScaling(group=None)
    lifecycle = Lifecycle(autoscaling, "i-0abc", None, None, None)
    with lifecycle.launching_heartbeats(every_s=0.001):
        time.sleep(0.02)
    assert autoscaling.calls == []
