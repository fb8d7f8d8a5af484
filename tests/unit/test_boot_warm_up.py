"""Boot: the backend warms up (loads and compiles) the first hot model before the launching lifecycle action
completes, and a warm-up that fails is a boot warning, not a failed boot."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from runtime import metric_names as m
from runtime.backends.base import BackendError
from runtime.worker.agent import Agent


class Recorder:
    def __init__(self, calls: list, fail: bool = False):
        self.calls, self.fail = calls, fail

    def wait_ready(self, timeout):
        self.calls.append(("wait_ready",))

    def warm_up(self, model_id, path):
        self.calls.append(("warm_up", model_id, path))
        if self.fail:
            raise BackendError("compile failed")
        return {"model": model_id}

    def check(self):
        return {}


def _agent(calls: list, fail: bool = False) -> SimpleNamespace:
    cache = SimpleNamespace(ensure=lambda model_id: SimpleNamespace(model_id=model_id, path=Path(f"/c/{model_id}"),
                                                                    hit=True))
    metrics = SimpleNamespace(counted=[], count=lambda name, **kw: metrics.counted.append((name, kw)),
                              emit=lambda *a: calls.append(("emit",)))
    agent = SimpleNamespace(config=SimpleNamespace(hot_models=("sdxl", "sd15"), backend_ready_timeout_seconds=5),
                            model_cache=cache, backend=Recorder(calls, fail), metrics=metrics, worker_id="i-1",
                            lifecycle=SimpleNamespace(complete_launching=lambda: calls.append(("complete",))))
    agent._warm_up = lambda cached: Agent._warm_up(agent, cached)
    return agent


def test_warm_up_of_the_first_hot_model_happens_before_the_launch_completes():
    calls: list = []
    Agent.boot(_agent(calls))
    assert calls[:3] == [("wait_ready",), ("warm_up", "sdxl", Path("/c/sdxl")), ("complete",)]


def test_a_failed_warm_up_is_a_boot_warning_and_the_instance_still_joins():
    calls: list = []
    agent = _agent(calls, fail=True)
    Agent.boot(agent)
    assert ("complete",) in calls
    assert any(name == m.BOOT_WARNINGS and kw["what"] == "warm-up" for name, kw in agent.metrics.counted)
