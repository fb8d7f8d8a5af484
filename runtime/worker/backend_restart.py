"""How the agent restarts its backend's service: one command, no shell, bounded in time.

On an instance the agent config says ``["systemctl", "restart", "<the backend's unit>"]``
(components/user_data.py, from the instance contract). The agent runs as the service user under
``NoNewPrivileges=yes``, so sudo cannot work; the AMI's polkit rule (packer/files/genai-fleet-backend.rules)
lets that user restart exactly the backend's unit and nothing else, over systemd's D-Bus API. Local mode and
the drills name a command that restarts their stand-in.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable, Sequence

from runtime.backends.base import BackendUnavailable

log = logging.getLogger(__name__)


def command_restarter(command: Sequence[str], timeout_s: float) -> Callable[[], None] | None:
    """A callable that runs ``command`` once (raises BackendUnavailable when it fails); None without a command."""
    if not command:
        return None
    argv = list(command)

    def restart() -> None:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BackendUnavailable(f"backend restart {' '.join(argv)!r} failed: {exc}") from exc
        if done.returncode != 0:
            raise BackendUnavailable(f"backend restart {' '.join(argv)!r} exited {done.returncode}: "
                                     f"{(done.stderr or done.stdout).strip()[:300]}")
        log.info("backend restarted: %s", " ".join(argv))

    return restart
