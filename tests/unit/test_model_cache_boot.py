"""The model-cache boot script and an instance store the AMI already mounted (the Deep Learning AMIs do).

The DLAMIs mount the instance store at /opt/dlami/nvme themselves (their release notes' nvme_location; their
dlami-nvme.service builds one LVM volume over the instance-store disks, ext4). The script must use that
filesystem, not format the same disks again. Here it runs in dry-run mode against a fake /sys/block and a
fake /proc/self/mountinfo; tests/rehearsal/ runs it for real, with loop devices, under systemd.
(tests/unit/test_packer.py covers the blank-disk cases: none, one, RAID0.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from runtime import instance_contract

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "packer" / "scripts" / "boot" / "setup-model-cache.sh"
STORE = "Amazon EC2 NVMe Instance Storage"
ROOT_LINE = "22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p1 rw\n"


def _run(tmp_path: Path, disks: dict[str, str], mountinfo: str, holders: dict[str, str] | None = None,
         dlami: bool = True) -> subprocess.CompletedProcess[str]:
    sys_block = tmp_path / "sys"
    for name, model in disks.items():
        (sys_block / name / "device").mkdir(parents=True)
        (sys_block / name / "device" / "model").write_text(model.ljust(40) + "\n")
    for name, holder in (holders or {}).items():
        (sys_block / name / "holders").mkdir(parents=True, exist_ok=True)
        (sys_block / name / "holders" / holder).write_text("")
    (tmp_path / "mountinfo").write_text(mountinfo)
    env = {"PATH": os.environ["PATH"], "DRY_RUN": "1", "SYS_BLOCK_DIR": str(sys_block),
           "DEV_DIR": str(tmp_path / "dev"),
           "MOUNTINFO": str(tmp_path / "mountinfo"), "MODEL_CACHE_DIR": str(tmp_path / "models")}
    if dlami:
        env["DLAMI_NVME_DIR"] = str(tmp_path / "dlami-nvme")
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30)


def _dlami_line(tmp_path: Path) -> str:
    return (f"301 22 253:0 / {tmp_path / 'dlami-nvme'} rw,noatime,nodiratime shared:170 - ext4 "
            f"/dev/mapper/vg.01-lv_ephemeral rw\n")


def test_the_contract_names_the_dlami_mount_and_the_unit_passes_it():
    assert instance_contract.DLAMI_NVME_DIR == "/opt/dlami/nvme"
    assert instance_contract.DLAMI_MODEL_CACHE_DIR.startswith(instance_contract.DLAMI_NVME_DIR + "/")
    unit = instance_contract.render_template(
        (REPO / "packer" / "files" / "genai-fleet-model-cache.service").read_text())
    assert "Environment=DLAMI_NVME_DIR=/opt/dlami/nvme" in unit
    assert f"Environment=DLAMI_MODEL_CACHE_DIR={instance_contract.DLAMI_MODEL_CACHE_DIR}" in unit
    # The DLAMI's own unit mounts it: run after it, so its mount is there (or will not come) when we look.
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert "dlami-nvme.service" in after.split()


def test_an_instance_store_the_dlami_mounted_is_used_not_formatted(tmp_path):
    proc = _run(tmp_path, {"nvme0n1": "Amazon Elastic Block Store", "nvme1n1": STORE, "nvme2n1": STORE},
                ROOT_LINE + _dlami_line(tmp_path), holders={"nvme1n1": "dm-0", "nvme2n1": "dm-0"})
    assert proc.returncode == 0, proc.stderr
    cache = tmp_path / "dlami-nvme" / "genai-fleet-models"
    assert f"+ mount --bind {cache} {tmp_path / 'models'}" in proc.stderr
    assert f"+ chown genai:genai {cache}" in proc.stderr
    assert "mkfs" not in proc.stderr and "mdadm" not in proc.stderr
    assert "the AMI mounted the instance store at" in proc.stderr and "/dev/mapper/vg.01-lv_ephemeral" in proc.stderr


def test_blank_disks_are_formatted_when_nothing_is_mounted_at_the_dlami_path(tmp_path):
    proc = _run(tmp_path, {"nvme0n1": "Amazon Elastic Block Store", "nvme1n1": STORE}, ROOT_LINE)
    assert proc.returncode == 0, proc.stderr
    assert "+ mkfs.xfs -f -q -L genai-cache" in proc.stderr and "mount --bind" not in proc.stderr


def test_a_disk_in_use_is_never_formatted(tmp_path):
    held = _run(tmp_path / "held", {"nvme1n1": STORE}, ROOT_LINE, holders={"nvme1n1": "dm-0"})
    assert held.returncode == 1
    assert "nvme1n1 is in use (held by dm-0) and nothing is mounted at" in held.stderr
    assert "mkfs" not in held.stderr
    mounted = _run(tmp_path / "mounted", {"nvme1n1": STORE}, ROOT_LINE + "40 22 259:2 / /scratch rw - ext4 "
                   f"{tmp_path / 'mounted' / 'dev'}/nvme1n1 rw\n")
    assert mounted.returncode == 1
    assert "nvme1n1 is in use (mounted) and nothing is mounted at" in mounted.stderr
    assert "mkfs" not in mounted.stderr


def test_a_cache_mounted_before_is_left_as_it_is(tmp_path):
    line = f"302 22 253:0 /genai-fleet-models {tmp_path / 'models'} rw - ext4 /dev/mapper/vg.01-lv_ephemeral rw\n"
    proc = _run(tmp_path, {"nvme1n1": STORE}, ROOT_LINE + _dlami_line(tmp_path) + line)
    assert proc.returncode == 0 and "is already mounted" in proc.stderr and "+ " not in proc.stderr
