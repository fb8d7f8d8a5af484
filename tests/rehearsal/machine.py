"""An instance root built from the AMI's own provisioning scripts, booted with systemd in a container.

- ``base_root()``: Debian bookworm (``debootstrap --variant=minbase`` with systemd) plus the AMI's
  ``install-base.sh`` (OS packages, the agent's Python, the service user, the contract's folders).
  Cached under ``GENAI_REHEARSAL_CACHE`` (default /var/cache/genai-fleet-rehearsal), keyed by the
  script and the contract, so it is built once per machine (a few minutes).
- ``InstanceRoot``: an overlay over the base root for one rehearsal (the base stays clean).
- ``Container``: ``systemd-nspawn --boot`` of a root; ``run()`` executes commands inside it (``nsenter``
  into the container's namespaces, as root, like Packer's shell provisioner or cloud-init would).
  The container shares the host's network, so it reaches moto and the fake IMDS on 127.0.0.1.

- ``LoopDisk``: a sparse file attached as a loop device, handed to a container as a disk (the instance
  store's stand-in: the boot units see it through their SYS_BLOCK_DIR / DEV_DIR hooks).

``unavailable()`` says why this machine cannot do it (not root, no nspawn/debootstrap/losetup, no network
for debootstrap), so the test skips with that reason instead of failing obscurely; ``give_up(reason)``
skips, or fails where the rehearsal is required (``GENAI_REHEARSAL_REQUIRED=1``, set by .ci/run), so a CI
that is meant to run it cannot pass without it.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKER = REPO / "packer"
CACHE = Path(os.environ.get("GENAI_REHEARSAL_CACHE", "/var/cache/genai-fleet-rehearsal"))
SUITE, MIRROR = "bookworm", os.environ.get("GENAI_REHEARSAL_MIRROR", "http://deb.debian.org/debian")
INCLUDE = "systemd,systemd-sysv,dbus,python3,ca-certificates"
NSPAWN = ["systemd-nspawn", "--register=no", "--keep-unit", "--quiet"]
REQUIRED = "GENAI_REHEARSAL_REQUIRED"


class RehearsalUnavailable(Exception):  # noqa: N818 - reads as a state
    """This machine cannot build or boot the instance root (the message says why)."""


def unavailable() -> str | None:
    if os.geteuid() != 0:
        return "the first-boot rehearsal needs root (debootstrap, systemd-nspawn, overlay mounts)"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "losetup") if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (make install installs debootstrap and systemd-container)"
    return None


def give_up(reason: str) -> None:
    """Skip the rehearsal with ``reason``, or fail with it where the rehearsal is required."""
    import pytest

    if os.environ.get(REQUIRED) == "1":
        pytest.fail(f"{reason} ({REQUIRED}=1: this run must rehearse the first boot; run it as root on a machine "
                    "with systemd-nspawn, debootstrap and loop devices)")
    pytest.skip(reason)


class PortTaken(Exception):  # noqa: N818 - reads as a state
    """A port the instance uses is taken on the host's loopback (the container shares it)."""


def refuse_taken_ports(ports: list[int], host: str = "127.0.0.1") -> None:
    """Raise PortTaken naming every port in ``ports`` that something on ``host`` already listens on."""
    taken = []
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(2.0)
            if sock.connect_ex((host, port)) == 0:  # something accepts connections there
                taken.append(port)
    if taken:
        raise PortTaken(f"{', '.join(f'{host}:{p}' for p in taken)} already in use on this host: the rehearsal's "
                        "container shares the host's loopback, so the instance's backend could not listen there and "
                        "its jobs would reach that other server; stop whatever listens there and run it again")


class LoopDisk:
    """A sparse file of ``size_mib`` attached as a loop device (``path``); ``close()`` detaches it."""

    def __init__(self, backing: Path, size_mib: int = 600) -> None:
        backing.parent.mkdir(parents=True, exist_ok=True)
        with backing.open("wb") as fh:
            fh.truncate(size_mib * 1024 * 1024)
        proc = _run(["losetup", "--find", "--show", str(backing)], 60)
        if proc.returncode != 0:
            raise RehearsalUnavailable(f"losetup failed (no loop devices?): {proc.stderr.strip()}")
        self.path = proc.stdout.strip()

    def close(self) -> None:
        _run(["losetup", "--detach", self.path], 60)


def _run(cmd: list[str], timeout: float, log: Path | None = None, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False, **kw)
    if log is not None:
        with log.open("a") as fh:
            fh.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    return proc


def base_root(log: Path) -> Path:
    """The cached Debian root with the AMI's base step applied (built on first use)."""
    digest = hashlib.sha256()
    for part in (PACKER / "scripts" / "install-base.sh", PACKER / "files" / "instance-contract.env",
                 PACKER / "files" / "instance-contract.sh"):
        digest.update(part.read_bytes())
    digest.update(f"{SUITE} {INCLUDE}".encode())
    root = CACHE / f"base-{digest.hexdigest()[:16]}"
    if (root / ".complete").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    # One builder per cache folder: other checkouts on this machine share it and wait here.
    with (CACHE / f"{root.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (root / ".complete").exists():
            return root
        return _build_base(root, log)


def _build_base(root: Path, log: Path) -> Path:
    work = CACHE / f"{root.name}.partial"
    shutil.rmtree(work, ignore_errors=True)
    proc = _run(["debootstrap", "--variant=minbase", f"--include={INCLUDE}", SUITE, str(work), MIRROR], 1800, log)
    if proc.returncode != 0:
        shutil.rmtree(work, ignore_errors=True)
        raise RehearsalUnavailable(f"debootstrap {SUITE} failed (no network to {MIRROR}?): {proc.stderr[-500:]}")
    # The AMI's base step, run as Packer runs it (root, FILES_DIR staged), in the container's own root.
    proc = _run([*NSPAWN, "-D", str(work), "--pipe", f"--bind-ro={PACKER}:/mnt/packer",
                 "-E", "FILES_DIR=/mnt/packer/files", "-E", "AGENT_PYTHON=python3.11",
                 "bash", "/mnt/packer/scripts/install-base.sh"], 1800, log, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        raise RuntimeError(f"install-base.sh failed in the instance root:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    (work / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    work.rename(root)
    return root


class InstanceRoot:
    """An overlay (read-only ``lowers``, top first, + a fresh upper layer) at ``path``; ``close()`` unmounts it.

    The AMI is the base root plus the build's upper layer; each launched instance gets its own upper.
    """

    def __init__(self, lowers: list[Path], work_dir: Path) -> None:
        self.upper, self.work, self.path = work_dir / "upper", work_dir / "work", work_dir / "root"
        for d in (self.upper, self.work, self.path):
            d.mkdir(parents=True, exist_ok=True)
        opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={self.upper},workdir={self.work}"
        proc = _run(["mount", "-t", "overlay", "overlay", "-o", opts, str(self.path)], 60)
        if proc.returncode != 0:
            raise RehearsalUnavailable(f"overlay mount failed: {proc.stderr.strip()}")

    def close(self) -> None:
        _run(["umount", "-l", str(self.path)], 60)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            out += children
            todo += children
    return out


def _is_container_init(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
    # PID 1 of the container once it has exec'd systemd (before that it is nspawn's own child, whose
    # root is still the host's).
    return len(nspid) > 1 and nspid[-1] == "1" and status.startswith("Name:\tsystemd\n")


class Container:
    """One boot of ``root`` under systemd-nspawn; ``run`` executes inside it as root."""

    def __init__(self, root: Path, log: Path, binds: dict[str, str] | None = None,
                 devices: list[str] | None = None) -> None:
        self.root, self.log = root, log
        binds = binds or {}
        cmd = [*NSPAWN, "-D", str(root), "--boot", "--console=read-only",
               *[f"--bind-ro={src}:{dst}" for src, dst in binds.items()],
               *[f"--bind={device}" for device in devices or []]]
        self._log_fh = log.open("ab")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._log_fh, stderr=subprocess.STDOUT)
        self.init_pid = self._find_init(timeout=60)

    def _find_init(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited ({self.proc.returncode}); see {self.log}")
            for pid in _descendants(self.proc.pid):
                if _is_container_init(pid):
                    return pid
            time.sleep(0.1)
        raise RuntimeError(f"no init process in the container after {timeout}s; see {self.log}")

    def run(self, script: str, timeout: float = 300, env: dict[str, str] | None = None,
            user: str | None = None) -> subprocess.CompletedProcess:
        """``bash -c script`` inside the container (its mounts, PID namespace, network), as root or ``user``."""
        variables = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                     **(env or {})}
        prefix = ["runuser", "-u", user, "--"] if user else []
        cmd = ["nsenter", "-t", str(self.init_pid), "-a", "--", *prefix, "env", "-i",
               *[f"{k}={v}" for k, v in variables.items()], "bash", "-c", script]
        return _run(cmd, timeout, self.log)

    def check(self, script: str, timeout: float = 300, **kw) -> str:
        proc = self.run(script, timeout, **kw)
        if proc.returncode != 0:
            raise AssertionError(f"`{script}` failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        return proc.stdout

    def wait_booted(self, timeout: float = 120) -> str:
        """``systemctl is-system-running --wait``: running, or degraded with the failed units named."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.run("systemctl is-system-running --wait", timeout).stdout.strip()
            if state in ("running", "degraded", "maintenance", "stopping"):
                break
            time.sleep(0.5)  # "offline" / "" while the manager is not reachable yet
        if state not in ("running", "degraded"):
            raise RuntimeError(f"container boot ended in state {state!r}; see {self.log}")
        return state

    def stop(self, timeout: float = 60) -> None:
        if self.proc.poll() is None:
            self.run("systemctl poweroff --no-block", 30)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log_fh.close()
