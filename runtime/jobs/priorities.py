"""Priority classes (issue 44, point 3): ``priority: high | normal | low`` on a job, within its key's ceiling.

A job without ``priority`` is ``normal``. A key's ceiling is ``max_priority`` on its key record (set with
``genai-stack api-key --max-priority``); a key without one has the ceiling ``normal``, so a class above the
default must be granted, and ``low`` is always allowed (a tenant may lower its own work). IAM callers and local
mode's anonymous caller have the ceiling ``normal`` too. A priority above the ceiling is refused with 403
naming the ceiling; an unknown value is a 422 naming ``priority`` and the allowed values.
"""

from __future__ import annotations

PRIORITIES = ("high", "normal", "low")  # highest first
DEFAULT_PRIORITY = "normal"
DEFAULT_CEILING = "normal"


def rank(priority: str) -> int:
    """0 for the highest class; unknown names rank as the default class."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else PRIORITIES.index(DEFAULT_PRIORITY)


def within(priority: str, ceiling: str | None) -> bool:
    """Whether a job of ``priority`` may be sent by a caller whose ceiling is ``ceiling`` (None: the default)."""
    return rank(priority) >= rank(ceiling or DEFAULT_CEILING)


def ceiling_of(value: object) -> str:
    """A stored ceiling read leniently: a known class name, else the default (a record written by hand)."""
    return value if isinstance(value, str) and value in PRIORITIES else DEFAULT_CEILING
