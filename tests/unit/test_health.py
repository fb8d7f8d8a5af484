"""The agent's health signal (runtime/worker/health.py) and its probe (Agent.healthy)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from runtime.worker import health
from runtime.worker.agent import Agent


@pytest.fixture
def notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def test_notify_speaks_the_sd_notify_datagram_protocol(notify_socket):
    assert health.notify("READY=1")
    assert notify_socket.recv(100) == b"READY=1"


def test_notify_without_systemd_is_a_no_op(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert health.notify("WATCHDOG=1") is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert health.watchdog_interval() == 60.0


def test_heartbeat_pings_and_touches_only_while_healthy(notify_socket, tmp_path):
    state = {"ok": True}
    beats = []
    file = tmp_path / "run" / "heartbeat"
    hb = health.Heartbeat(lambda: state["ok"], file=str(file), beat=lambda: beats.append(1), interval=0.05)
    assert hb.once()
    assert notify_socket.recv(100) == b"WATCHDOG=1"
    assert abs(float(file.read_text()) - time.time()) < 5
    assert beats == [1]
    state["ok"] = False
    assert not hb.once()
    notify_socket.settimeout(0.3)
    with pytest.raises(TimeoutError):
        notify_socket.recv(100)  # nothing sent: systemd's watchdog runs out and restarts the agent


def test_a_probe_that_raises_counts_as_unhealthy():
    def broken() -> bool:
        raise RuntimeError("boom")

    assert health.Heartbeat(broken, interval=1).once() is False


def _agent(current=None, last_tick=None, unrecoverable=None) -> SimpleNamespace:
    config = SimpleNamespace(max_job_seconds=60, queue=SimpleNamespace(wait_time_seconds=20),
                             backend_restart_timeout_seconds=180)
    return SimpleNamespace(config=config, supervisor=SimpleNamespace(current=current, unrecoverable=unrecoverable),
                           last_tick=last_tick)


def _job(started: float, deadline: float | None = None, start_deadline: float | None = None) -> SimpleNamespace:
    return SimpleNamespace(started=started, ctx=SimpleNamespace(deadline=deadline, start_deadline=start_deadline))


def test_agent_health_probe():
    now = time.monotonic()
    assert Agent.healthy(_agent())  # booting
    assert Agent.healthy(_agent(last_tick=now - 5))
    assert not Agent.healthy(_agent(last_tick=now - 600))  # the loop stopped going round
    job = _job(started=now - 30)
    assert Agent.healthy(_agent(last_tick=now - 600, current=job))  # a job within its time limit
    job.started = now - 1000
    assert not Agent.healthy(_agent(last_tick=now - 600, current=job))  # a job stuck past it


def test_health_counts_a_jobs_time_from_when_the_backend_started_it_and_the_restart_that_may_follow():
    """Issue 34: the time limit starts when the backend starts the job (it may wait in the backend's queue first),
    and a backend that ignores the stop is restarted (bounded by backend_restart_timeout_seconds)."""
    now = time.monotonic()
    waited = _job(started=now - 100, deadline=now + 30)  # queued 70 s, then started: 30 s of its limit left
    assert Agent.healthy(_agent(last_tick=now - 600, current=waited))
    restarting = _job(started=now - 400, deadline=now - 200)  # past its limit, its backend being restarted
    assert Agent.healthy(_agent(last_tick=now - 600, current=restarting))
    stuck = _job(started=now - 1000, deadline=now - 800)  # past the limit + restart + stall
    assert not Agent.healthy(_agent(last_tick=now - 600, current=stuck))


def test_a_backend_that_cannot_be_brought_back_makes_the_agent_unhealthy():
    assert not Agent.healthy(_agent(last_tick=time.monotonic(), unrecoverable="restart failed"))


def test_self_check_refuses_a_backend_the_image_lacks(tmp_path):
    """ExecStartPre's self-check: comfyui configured at the contract's URL but not installed -> a config error."""
    import json

    from runtime import instance_contract as ic
    from runtime.worker.__main__ import self_check

    config = {"stack": "t", "region": "us-east-1", "job_table": "jobs", "backend": "comfyui",
              "backend_url": ic.COMFYUI.url, "queue": {"kind": "sqs", "url": "https://sqs/q"},
              "outputs": {"bucket": "b", "cdn_base_url": "https://cdn"}}
    path = tmp_path / "agent.json"
    path.write_text(json.dumps(config))
    ok, report = self_check(str(path))
    assert not Path(ic.COMFYUI.python).exists()  # this machine is not the AMI
    assert not ok and f"{ic.COMFYUI.python} is missing" in report["config"]["error"]
    path.write_text(json.dumps({**config, "backend_url": "http://127.0.0.1:18188"}))  # served elsewhere (local)
    ok, report = self_check(str(path))
    assert report["config"]["valid"], report
