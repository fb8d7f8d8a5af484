"""The AMI's agent install step, run here: packer/scripts/install-agent.sh installs the runtime wheel
(built from this checkout the way tools/ami_build.py builds it) into a temporary prefix, renders the
systemd units into a temporary root, and the installed ``genai-worker self-check`` must pass.

Building the wheel fetches the build backend from a package index, as `make ami` does. To stay fast,
the new venv then reuses the test venv's installed dependencies through a .pth file
(SITE_PACKAGES_FROM) and installs with pip's index disabled; pip still resolves the wheel's
dependencies against runtime-requirements.txt as constraints, so a missing or mis-pinned dependency
fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "packer" / "scripts" / "install-agent.sh"
REVISION = "0123456789abcdef0123456789abcdef01234567"
VALID_CONFIG = {
    "stack": "test",
    "region": "us-east-1",
    "queue": {"kind": "sqs", "url": "https://sqs.us-east-1.amazonaws.com/123456789012/genai-jobs"},
    "job_table": "genai-jobs",
    "outputs": {"bucket": "genai-outputs", "cdn_base_url": "https://d111111abcdef8.cloudfront.net"},
    "backend": "test-pattern",
}


def _driver():
    if "ami_build" in sys.modules:
        return sys.modules["ami_build"]
    spec = importlib.util.spec_from_file_location("ami_build", REPO / "tools" / "ami_build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["ami_build"] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _install_env(tmp: Path, source: Path) -> dict[str, str]:
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp),
        "AGENT_SOURCE": str(source),
        "PREFIX": str(tmp / "opt" / "genai-fleet"),
        "DESTDIR": str(tmp / "root"),
        "PYTHON": sys.executable,
        "SITE_PACKAGES_FROM": sys.executable,
        "PIP_OFFLINE": "1",
        "CONSTRAINTS": str(REPO / "runtime-requirements.txt"),
        "SKIP_SYSTEMD": "1",
        "FLAVOR": "cuda",
        "GIT_REVISION": REVISION,
        "AMI_VERSION": "0.1.0",
    }


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("agent-install")
    wheel = _driver().build_agent_wheel("HEAD", use_worktree=True, out_dir=tmp / "dist")
    proc = subprocess.run([str(INSTALL)], env=_install_env(tmp, tmp / "dist"), cwd=tmp,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, f"install-agent.sh failed:\n{proc.stdout}\n{proc.stderr}"
    return {"tmp": tmp, "prefix": tmp / "opt" / "genai-fleet", "root": tmp / "root", "wheel": wheel,
            "log": proc.stderr}


def _worker(installed: dict[str, Path], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(installed["prefix"] / "bin" / "genai-worker"), *args], cwd=installed["tmp"],
                          env={"PATH": os.environ["PATH"], "HOME": str(installed["tmp"])},
                          capture_output=True, text=True, timeout=60)


def test_self_check_passes_in_the_installed_prefix(installed):
    proc = _worker(installed, "self-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    json.loads(proc.stdout)  # a JSON report


def test_self_check_validates_a_config(installed, tmp_path):
    good = tmp_path / "agent.json"
    good.write_text(json.dumps(VALID_CONFIG))
    proc = _worker(installed, "self-check", "--config", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**VALID_CONFIG, "backend": "nope"}))
    assert _worker(installed, "self-check", "--config", str(bad)).returncode != 0


def test_agent_runs_from_the_wheel_not_the_checkout(installed):
    proc = subprocess.run([str(installed["prefix"] / "bin" / "python"), "-c",
                           "import os, runtime; print(os.path.realpath(runtime.__file__))"],
                          cwd=installed["tmp"], capture_output=True, text=True, check=True)
    assert proc.stdout.strip().startswith(str(installed["prefix"].resolve()))


def test_the_wheel_holds_the_runtime_package_and_only_the_runtime_scripts(installed):
    """One pyproject for the whole repo, but the AMI gets the runtime alone: no developer tooling, no IaC."""
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = wheel.namelist()
        entry_points = next(wheel.read(n).decode() for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")} == {"runtime"}
    assert not [n for n in names if n.startswith(("runtime/local/", "runtime/api/local_server"))]
    assert sorted(line for line in entry_points.splitlines() if " = " in line) == [
        "genai-compile-cache = runtime.backends.compile_cache_fill:main", "genai-worker = runtime.worker.__main__:main"]
    # (third-party packages come from the test's shared site-packages here, so only ours are checked)
    site = subprocess.run([str(installed["prefix"] / "bin" / "python"), "-c",
                           "import importlib.util as u; print([m for m in ('fleetdev', 'components', 'tools')"
                           " if u.find_spec(m)])"], cwd=installed["tmp"], capture_output=True, text=True, check=True)
    assert site.stdout.strip() == "[]"


def test_units_rendered_for_the_prefix(installed):
    units = installed["root"] / "etc" / "systemd" / "system"
    worker = (units / "genai-worker.service").read_text()
    prefix = installed["prefix"]
    assert f"ExecStart={prefix}/bin/genai-worker run --config /etc/genai-fleet/agent.json" in worker
    assert "Restart=always" in worker
    unhealthy = (units / "genai-worker-unhealthy.service").read_text()
    assert f"ExecStart={prefix}/bin/genai-worker mark-unhealthy" in unhealthy
    for name in ("genai-worker.service", "genai-worker.path", "genai-fleet-model-cache.service",
                 "genai-fleet-boot-timing.service", "genai-worker-unhealthy.service"):
        text = (units / name).read_text()
        assert not re.search(r"@[A-Z_]+@", text), f"{name} has unrendered placeholders"
    libexec = installed["root"] / "usr" / "local" / "libexec" / "genai-fleet"
    for name in ("setup-model-cache.sh", "record-boot-timing.sh"):
        assert os.access(libexec / name, os.X_OK), name
    assert "SKIP_SYSTEMD=1" in installed["log"]


def test_release_file_and_no_secrets(installed):
    etc = installed["root"] / "etc" / "genai-fleet"
    release = json.loads((etc / "release.json").read_text())
    assert release["git_revision"] == REVISION
    assert release["flavor"] == "cuda"
    assert release["agent_artifact"] == installed["wheel"].name
    assert len(release["agent_sha256"]) == 64
    assert not (etc / "agent.json").exists(), "the agent config comes from user data, never the image"


def test_missing_source_fails_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    proc = subprocess.run([str(INSTALL)], env=_install_env(tmp_path, tmp_path / "empty"), capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode != 0
    assert "must hold exactly one wheel, found 0" in proc.stderr
