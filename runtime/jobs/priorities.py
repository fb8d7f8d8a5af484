"""Priority classes (issue 44, point 3): ``priority: high | normal | low`` on a job, within its key's ceiling.

A job without ``priority`` is ``normal``. A key's ceiling is ``max_priority`` on its key record (set with
``genai-stack api-key --max-priority``); a key without one has the ceiling ``normal``, so a class above the
default must be granted, and ``low`` is always allowed (a tenant may lower its own work). IAM callers and local
mode's anonymous caller have the ceiling ``normal`` too. A priority above the ceiling is refused with 403
naming the ceiling; an unknown value is a 422 naming ``priority`` and the allowed values.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

PRIORITIES = ("high", "normal", "low")  # highest first
# The scheduling the planner models (planner/classes.py) and the workers are to follow: a queue per class,
# polled by smooth weighted round robin over the classes that have work. While every class has work, each
# gets its weight's share of the starts: low one in sum(weights) = 12, so a low job with p jobs ahead of it in
# its class starts within about 12 * p / (fleet starts per second); classes emptying and refilling shift the
# rotation by a pick (the planner measures the longest gap: 13 starts in its overload run, docs/planner.md).
POLL_WEIGHTS = {"high": 8, "normal": 3, "low": 1}
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


class WeightedPicker:
    """Smooth weighted round robin (nginx's) over the classes that have work: which class the next start takes."""

    def __init__(self, weights: Mapping[str, int] | None = None) -> None:
        self.weights = dict(weights or POLL_WEIGHTS)
        self._current = dict.fromkeys(self.weights, 0)

    def pick(self, waiting: Collection[str]) -> str | None:
        """The class to take from, among ``waiting`` (the classes with work); None when none has any."""
        live = [c for c in self.weights if c in waiting]
        if not live:
            return None
        total = sum(self.weights[c] for c in live)
        for c in self.weights:  # a class without work starts afresh when work comes (no credit, no debt)
            if c not in live:
                self._current[c] = 0
        for c in live:
            self._current[c] += self.weights[c]
        chosen = max(live, key=lambda c: (self._current[c], -rank(c)))
        self._current[chosen] -= total
        return chosen


def jobs_ahead(queued: Mapping[str, int], priority: str, weights: Mapping[str, int] | None = None) -> int:
    """Jobs that start before a new job of ``priority`` under the weighted polling, as a FIFO count: its own
    class's queue, scaled by the share of starts the class gets while the others have work (its weight over
    the weights of the classes with work), never more than every queued job. The admission estimate of a
    class (``next_start_seconds(ahead=...)``)."""
    w = dict(weights or POLL_WEIGHTS)
    own = int(queued.get(priority, 0))
    live = {c for c, n in queued.items() if n > 0} | {priority}
    share = w[priority] / sum(w[c] for c in live)
    return min(sum(int(n) for n in queued.values()), round((own + 1) / share) - 1)
