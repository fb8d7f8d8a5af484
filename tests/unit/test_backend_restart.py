"""Issue 34: the agent restarts a backend that holds work it was told to stop, and reports itself unhealthy when
the backend cannot be brought back within its bound (runtime/worker/backend_supervisor.py, backend_restart.py)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.backends.base import Backend, BackendResult, BackendUnavailable
from runtime.worker.backend_restart import command_restarter
from runtime.worker.backend_supervisor import BackendSupervisor
from runtime.worker.stop_signal import StopSignal


class Wedged(Backend):
    """A backend that asks for a restart after its call, and answers (or not) after it."""

    name = "wedged"

    def __init__(self, answers_after_restart: bool = True) -> None:
        self.reason: str | None = "prompt p1 still running 10 s after POST /interrupt"
        self.answers = answers_after_restart
        self.ready_calls: list[float] = []

    def wait_ready(self, timeout: float) -> None:
        self.ready_calls.append(timeout)
        if not self.answers:
            raise BackendUnavailable("not ready after restart")

    def run(self, ctx) -> BackendResult:  # pragma: no cover - not called here
        raise AssertionError

    def restart_needed(self) -> str | None:
        reason, self.reason = self.reason, None
        return reason


def supervisor(backend: Backend, restart=None, on_unrecoverable=None) -> BackendSupervisor:
    metrics = SimpleNamespace(count=lambda *a, **k: None, emit=lambda *a, **k: None)
    return BackendSupervisor(backend, metrics=metrics, worker_id="w", ready_timeout_s=5, stop=StopSignal(),
                             on_model=lambda m: None, restart=restart, restart_timeout_s=30,
                             on_unrecoverable=on_unrecoverable)


def test_a_wedged_backend_is_restarted_once_and_waited_for():
    backend, restarts = Wedged(), []
    sup = supervisor(backend, restart=lambda: restarts.append(1))
    sup.after_call()
    sup.after_call()  # the reason is taken once: no second restart
    assert restarts == [1] and len(backend.ready_calls) == 1 and 0 < backend.ready_calls[0] <= 30
    assert sup.unrecoverable is None and len(sup.restarts) == 1


@pytest.mark.parametrize("case", ["no-command", "command-fails", "never-answers"])
def test_a_backend_that_cannot_be_brought_back_marks_the_instance_unhealthy(case):
    backend = Wedged(answers_after_restart=case != "never-answers")

    def failing() -> None:
        raise BackendUnavailable("restart exited 1")

    restart = {"no-command": None, "command-fails": failing, "never-answers": lambda: None}[case]
    marked: list[str] = []
    sup = supervisor(backend, restart=restart, on_unrecoverable=marked.append)
    sup.after_call()
    assert sup.unrecoverable and marked == [sup.unrecoverable]
    assert "still running" in sup.unrecoverable


def test_leftovers_are_swept_between_calls_now_and_then(monkeypatch):
    from runtime.worker import backend_supervisor

    backend, swept = Wedged(), []
    backend.reason = None
    backend.sweep = lambda older_than_s: swept.append(older_than_s) or 0  # type: ignore[method-assign]
    sup = supervisor(backend)
    sup.after_call()
    assert swept == []  # not at once
    monkeypatch.setattr(backend_supervisor, "SWEEP_EVERY_S", 0.0)
    sup.after_call()
    assert swept == [backend_supervisor.SWEEP_OLDER_THAN_S]


def test_the_default_backend_never_asks_for_a_restart():
    class Plain(Backend):
        def wait_ready(self, timeout: float) -> None: ...

        def run(self, ctx) -> BackendResult:  # pragma: no cover
            raise AssertionError

    assert Plain().restart_needed() is None


def test_the_restart_command_requests_and_waits_until_the_request_is_taken(tmp_path: Path):
    """The instance's command (instance_contract.BACKEND_RESTART_COMMAND), pointed at a temporary request file: it
    returns only once the root unit removed the request (here a thread plays the path unit)."""
    from runtime import instance_contract as ic

    request = tmp_path / "backend-restart.request"
    command = [part.replace(ic.BACKEND_RESTART_REQUEST, str(request)) for part in ic.BACKEND_RESTART_COMMAND]
    taken = threading.Event()

    def path_unit() -> None:
        while not request.exists():
            taken.wait(0.05)
        request.unlink()
        taken.set()

    threading.Thread(target=path_unit, daemon=True).start()
    command_restarter(command, timeout_s=30)()
    assert taken.is_set() and not request.exists()


def test_the_restart_command_is_bounded_and_its_failure_named(tmp_path: Path):
    assert command_restarter((), 5) is None
    with pytest.raises(BackendUnavailable, match="exited 3"):
        command_restarter([sys.executable, "-c", "import sys; sys.exit(3)"], 30)()
    with pytest.raises(BackendUnavailable, match="failed"):
        command_restarter([sys.executable, "-c", "import time; time.sleep(30)"], 0.5)()


@pytest.mark.parametrize("value", ["systemctl restart comfyui.service", [], ["systemctl", ""], [1]])
def test_a_bad_restart_command_in_the_agent_config_names_the_key(value):
    from runtime.agent_config import AgentConfigError, parse

    base = {"stack": "t", "region": "us-east-1", "job_table": "jobs", "backend": "test-pattern",
            "queue": {"kind": "sqs", "url": "https://sqs/q"}, "outputs": {"bucket": "b", "cdn_base_url": "https://c"}}
    assert parse(base).backend_restart_command == ()
    with pytest.raises(AgentConfigError, match="backend_restart_command"):
        parse({**base, "backend_restart_command": value})
    with pytest.raises(AgentConfigError, match="backend_restart_timeout_seconds"):
        parse({**base, "backend_restart_timeout_seconds": 5})
