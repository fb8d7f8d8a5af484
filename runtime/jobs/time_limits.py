"""How long a job may run: its task's time limit.

A video may run minutes where an image takes seconds, so the stack sets ``maxJobSeconds`` (every task) and,
optionally, ``taskMaxJobSeconds`` (task -> seconds) for the tasks that need another limit. The worker gives
each job ``job_time_limit`` (runtime.worker.claims sets the job's deadline from it; where the deadline starts
is the worker's business), and the timeouts that must outlast any job (the lifecycle hooks' heartbeat, the
agent's drain on stop, its health probe) follow ``longest_time_limit``.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from runtime.jobs.models import TASKS

MIN_SECONDS, MAX_SECONDS = 10, 3600


def job_time_limit(task: str, max_job_seconds: float, task_max_job_seconds: Mapping[str, float]) -> float:
    """Seconds a ``task`` job may run: its own limit where one is set, else ``max_job_seconds``."""
    return float(task_max_job_seconds.get(task, max_job_seconds))


def longest_time_limit(max_job_seconds: float, task_max_job_seconds: Mapping[str, float],
                       tasks: Collection[str] | None = None) -> float:
    """The longest any job may run (of ``tasks``, the fleet's, when given)."""
    own = [float(v) for t, v in task_max_job_seconds.items() if tasks is None or t in tasks]
    return max([float(max_job_seconds), *own])


def parse_task_limits(raw: Any, key: str) -> dict[str, int]:
    """Check a task -> seconds mapping; errors name ``key``, the task and what is allowed."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{key} must be an object of task -> seconds (tasks: {', '.join(TASKS)})")
    out: dict[str, int] = {}
    for task, seconds in raw.items():
        if task not in TASKS:
            raise ValueError(f"{key}.{task}: not a task; tasks: {', '.join(TASKS)}")
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not float(seconds).is_integer() \
                or not MIN_SECONDS <= seconds <= MAX_SECONDS:
            raise ValueError(f"{key}.{task} = {seconds!r}: must be a whole number of seconds from {MIN_SECONDS} to "
                             f"{MAX_SECONDS}")
        out[task] = int(seconds)
    return out
