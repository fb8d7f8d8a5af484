"""Boot: the backend warms up (loads and compiles) the first hot model before the launching lifecycle action
completes, and a warm-up that fails is a boot warning, not a failed boot."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.worker.agent import Agent
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


def _agent(calls: list, fail: bool = False, report: dict | None = None) -> SimpleNamespace:
    cache = SimpleNamespace(ensure=lambda model_id: SimpleNamespace(model_id=model_id, path=Path(f"/c/{model_id}"),
                                                                    hit=True))
    metrics = SimpleNamespace(counted=[], count=lambda name, **kw: metrics.counted.append((name, kw)),
                              emit=lambda *a: calls.append(("emit",)))
    agent = SimpleNamespace(config=SimpleNamespace(hot_models=("sdxl", "sd15"), backend_ready_timeout_seconds=5),
                            model_cache=cache, backend=Recorder(calls, fail, report), metrics=metrics, worker_id="i-1",
                            lifecycle=SimpleNamespace(complete_launching=lambda: calls.append(("complete",))))
    return agent


def test_warm_up_of_the_first_hot_model_happens_before_the_launch_completes():
    calls: list = []
    Agent.boot(_agent(calls))
    assert calls[:3] == [("wait_ready",), ("warm_up", "sdxl", Path("/c/sdxl")), ("complete",)]


def test_a_failed_warm_up_is_a_boot_warning_and_the_instance_still_joins():
    calls: list = []
    agent = _agent(calls, fail=True)
    boot(agent)
    assert ("complete",) in calls
    assert any(name == m.BOOT_WARNINGS and kw["what"] == "warm-up" for name, kw in agent.metrics.counted)


def test_a_skipped_cold_compile_is_a_boot_warning_and_a_warm_one_is_not():
    for skipped, expect in ((True, True), (False, False)):
        calls: list = []
        agent = _agent(calls, report={"cold_compile_skipped": skipped})
        boot(agent)
        assert ("complete",) in calls
        warned = [kw for name, kw in agent.metrics.counted if name == m.BOOT_WARNINGS]
        assert bool(warned) is expect and all(kw["what"] == "compile-cache-cold" for kw in warned)
