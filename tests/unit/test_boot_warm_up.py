"""Boot: the backend warms up (loads and compiles) the first hot model before the launching lifecycle action
completes, and a warm-up that fails is a boot warning, not a failed boot."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.worker.boot import boot


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
                lifecycle=SimpleNamespace(complete_launching=lambda: calls.append(("complete",))))


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
