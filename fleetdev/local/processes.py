"""Child processes of local mode: each in its own process group, stopped with SIGTERM then SIGKILL.

Every child gets a new session (so Ctrl-C in the terminal reaches only the orchestrator, which then
stops the children in order) and, on Linux, ``PR_SET_PDEATHSIG = SIGKILL`` so that a child never
outlives an orchestrator that was itself killed. Output goes to one log file per child.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (bound and released: another process could take it, rarely)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(probe: Callable[[], bool], timeout: float, what: str,
             alive: Callable[[], bool] | None = None) -> None:
    """Poll ``probe`` (exceptions count as 'not yet') until True; bounded by ``timeout``."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            if probe():
                return
        except Exception:  # any failure of a readiness probe means "not ready yet"
            log.debug("%s not ready yet", what, exc_info=True)
        if alive is not None and not alive():
            raise RuntimeError(f"{what} exited while starting (see its log)")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)


class ManagedProcess:
    """One child process in its own process group, with its output in ``log_path``."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = dict(env or os.environ)
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped_by_signal = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         env=self.env, cwd=self.cwd, start_new_session=True,
                                         preexec_fn=_die_with_parent)  # only prctl: safe between fork and exec
        log.info("started %s (pid %d): %s", self.name, self.proc.pid, " ".join(self.argv))
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the child's whole process group (no-op once it has exited)."""
        if self.alive():
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL at once (the drill's crash) and reap it."""
        self.signal(signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM the group, wait up to ``grace`` seconds, then SIGKILL; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.signal(signal.SIGCONT)  # a frozen (SIGSTOPped) child cannot act on SIGTERM
            self.signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs of SIGTERM: SIGKILL", self.name, grace)
                self.signal(signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=10)
        # The leader is gone; kill anything it left in its group (no orphans).
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def stop_all(processes: Sequence[ManagedProcess], grace: float = 10.0) -> None:
    """Stop several children at once: SIGTERM to all, one shared grace period, then SIGKILL."""
    running = [p for p in processes if p.alive()]
    for p in running:
        p.signal(signal.SIGCONT)
        p.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in running:
        assert p.proc is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    for p in processes:
        if p.alive():
            log.warning("%s did not stop within %.0fs of SIGTERM: SIGKILL", p.name, grace)
            p.signal(signal.SIGKILL)
        p.stop(grace=1.0)
