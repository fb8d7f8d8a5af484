"""The A1111 build step, run here: what ``install-a1111.sh`` hands A1111's ``launch.py``.

v1.10.1's ``launch.py --exit`` clones github.com/Stability-AI/stablediffusion, which no longer exists, and git
then waits for a credential prompt, so the AMI build hangs. The fix pins the repositories launch.py clones
through launch.py's own variables (``STABLE_DIFFUSION_REPO`` / ``..._COMMIT_HASH`` and the XL pair), with
``GIT_TERMINAL_PROMPT=0`` so a missing repository fails at once.

The script runs for real with the environment ``packer/build.pkr.hcl`` gives its provisioner (the values
resolved from ``release.auto.pkrvars.hcl`` as Packer would), installing a stand-in A1111 tree
(``A1111_SOURCE``; no network here) whose ``launch.py`` records what it was started with, into a staging
root (``DESTDIR``). The real clones can only happen on an AWS build (docs/amis.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools import ami_preflight

REPO = Path(__file__).resolve().parents[2]
PACKER = REPO / "packer"
SCRIPT = PACKER / "scripts" / "install-a1111.sh"
PINS = ("STABLE_DIFFUSION_REPO", "STABLE_DIFFUSION_COMMIT_HASH", "STABLE_DIFFUSION_XL_REPO",
        "STABLE_DIFFUSION_XL_COMMIT_HASH")
GONE = "https://github.com/Stability-AI/stablediffusion.git"

# The stand-in's launch.py: records its arguments and the variables launch.py reads, then exits as --exit does.
LAUNCH_PY = """import json, os, sys
keys = {keys!r}
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch-record.json"), "w") as fh:
    json.dump({{"argv": sys.argv[1:], "env": {{k: os.environ.get(k) for k in keys}}}}, fh)
"""
# How A1111 v1.10.1's modules/launch_utils.py reads them (one `os.environ.get('NAME', default)` each).
LAUNCH_UTILS = "\n".join(f"{name.lower()} = os.environ.get('{name}', \"default\")" for name in PINS) + "\n"


def _provisioner_env() -> dict[str, str]:
    """The install-a1111 provisioner's environment_vars from build.pkr.hcl, resolved with the release values."""
    build = ami_preflight._load(PACKER / "build.pkr.hcl")["build"][0]
    values = ami_preflight.packer_values([])
    for block in build["provisioner"]:
        for _, body in block.items():
            if str(body.get("script", "")).endswith('/scripts/install-a1111.sh"'):
                pairs = [ami_preflight._resolve(v, {**values, "install_a1111": "true"}).split("=", 1)
                         for v in body["environment_vars"]]
                return {k: v for k, v in pairs}
    raise AssertionError("build.pkr.hcl has no install-a1111.sh provisioner")


def _standin(tmp_path: Path, launch_utils: str = LAUNCH_UTILS) -> Path:
    tree = tmp_path / "a1111-standin"
    (tree / "modules").mkdir(parents=True)
    (tree / "launch.py").write_text(LAUNCH_PY.format(keys=[*PINS, "GIT_TERMINAL_PROMPT"]))
    (tree / "modules" / "launch_utils.py").write_text(launch_utils)
    return tree


def _run(tmp_path: Path, env: dict[str, str], source: Path) -> subprocess.CompletedProcess[str]:
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    hooks = {"FILES_DIR": str(PACKER / "files"), "AGENT_PYTHON": sys.executable, "A1111_SOURCE": str(source),
             "SKIP_TORCH": "1", "SKIP_SYSTEMD": "1", "DESTDIR": str(tmp_path / "root")}
    return subprocess.run([str(SCRIPT)], env={**base, **env, **hooks}, capture_output=True, text=True, timeout=180)


def _record(tmp_path: Path) -> dict:
    from runtime import instance_contract

    return json.loads((tmp_path / "root" / instance_contract.A1111.install_dir.lstrip("/") /
                       "launch-record.json").read_text())


def test_the_build_passes_the_pinned_repositories_to_launch_py(tmp_path):
    env = _provisioner_env()
    release = ami_preflight.packer_values([])
    proc = _run(tmp_path, env, _standin(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = _record(tmp_path)
    assert record["argv"] == ["--exit", "--skip-torch-cuda-test"]
    assert record["env"] == {
        "STABLE_DIFFUSION_REPO": release["a1111_stable_diffusion_repo"],
        "STABLE_DIFFUSION_COMMIT_HASH": release["a1111_stable_diffusion_commit"],
        "STABLE_DIFFUSION_XL_REPO": release["a1111_stable_diffusion_xl_repo"],
        "STABLE_DIFFUSION_XL_COMMIT_HASH": release["a1111_stable_diffusion_xl_commit"],
        "GIT_TERMINAL_PROMPT": "0",
    }
    assert record["env"]["STABLE_DIFFUSION_REPO"] != GONE
    assert (tmp_path / "root" / "etc" / "systemd" / "system" / "a1111.service").exists()


def test_the_pins_are_a_live_fork_at_the_commit_a1111_names():
    release = ami_preflight.packer_values([])
    # A1111 pull request #17207 moved the dev branch to this fork, keeping v1.10.1's commit.
    assert release["a1111_version"] == "v1.10.1"
    assert release["a1111_stable_diffusion_repo"] == "https://github.com/w-e-w/stablediffusion.git"
    assert release["a1111_stable_diffusion_commit"] == "f16630a927e00098b524d687640719e4eb469b76"
    assert release["a1111_stable_diffusion_xl_repo"] == "https://github.com/Stability-AI/generative-models.git"
    assert release["a1111_stable_diffusion_xl_commit"] == "45c443b316737a4ab6e40413d7794a7f5657c19f"


@pytest.mark.parametrize("missing", ["STABLE_DIFFUSION_REPO", "STABLE_DIFFUSION_XL_COMMIT_HASH"])
def test_an_unpinned_repository_stops_the_build_naming_it(tmp_path, missing):
    env = {k: v for k, v in _provisioner_env().items() if k != missing}
    proc = _run(tmp_path, env, _standin(tmp_path))
    assert proc.returncode != 0
    assert f"install-a1111: {missing} is not set: pin it in packer/release.auto.pkrvars.hcl" in proc.stderr


def test_a_release_that_no_longer_reads_a_pin_stops_the_build(tmp_path):
    renamed = LAUNCH_UTILS.replace("'STABLE_DIFFUSION_XL_REPO'", "'SDXL_REPO'")
    proc = _run(tmp_path, _provisioner_env(), _standin(tmp_path, renamed))
    assert proc.returncode != 0
    assert "modules/launch_utils.py does not read STABLE_DIFFUSION_XL_REPO" in proc.stderr
    with pytest.raises(FileNotFoundError):
        _record(tmp_path)  # launch.py never ran


def test_install_a1111_false_skips_without_pins(tmp_path):
    proc = _run(tmp_path, {"INSTALL_A1111": "false", "A1111_VERSION": "v1.10.1", "TORCH_VERSION": "2.5.1",
                           "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu124"}, _standin(tmp_path))
    assert proc.returncode == 0 and "skipping" in proc.stderr
