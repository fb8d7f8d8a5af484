"""The first-boot rehearsal may skip on a developer's machine, never in CI (it needs root; CI runs it as root)."""

from __future__ import annotations

import pytest
import yaml

from tests.rehearsal import machine

ROOT = machine.REPO


def test_a_machine_that_cannot_rehearse_skips_unless_the_rehearsal_is_required(monkeypatch):
    monkeypatch.delenv(machine.REQUIRED, raising=False)
    with pytest.raises(pytest.skip.Exception, match="not root"):
        machine.give_up("not root")
    monkeypatch.setenv(machine.REQUIRED, "1")
    with pytest.raises(pytest.fail.Exception, match=r"not root \(GENAI_REHEARSAL_REQUIRED=1: this run must rehearse"):
        machine.give_up("not root")


def test_ci_requires_the_rehearsal_and_runs_as_root():
    assert 'export GENAI_REHEARSAL_REQUIRED="${GENAI_REHEARSAL_REQUIRED:-1}"' in (ROOT / ".ci" / "run").read_text()
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "test.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    assert 'sudo -E env "PATH=$PATH" .ci/run' in runs


def test_the_rehearsal_refuses_to_start_naming_a_port_the_instance_uses_that_is_taken():
    """Issue 34: the container shares the host's loopback; with another ComfyUI on 8188 the rehearsal's job reached
    it ("ckpt_name not in []"). It must refuse to start instead, naming the port."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        taken = listener.getsockname()[1]
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]  # bound, not listening: nothing answers there
            machine.refuse_taken_ports([free])
            with pytest.raises(machine.PortTaken, match=f"127.0.0.1:{taken} already in use"):
                machine.refuse_taken_ports([free, taken])
