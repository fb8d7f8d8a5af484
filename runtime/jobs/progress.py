"""The one progress shape every backend reports (issue 38), and how it is coarsened into events.

A backend reports ``Progress`` through ``JobContext.report`` (runtime.backends.base); the worker's
``ProgressReporter`` (runtime/worker/progress_reporter.py) keeps the latest per attempt and writes an event
only when the job moved to a new stage or a new ``EVENT_PERCENT_STEP`` bucket, at most once per flush
interval per job, so a 30-step job writes about ten progress events, never thirty.

Fields (all optional but ``stage``):

============  ====================================================================================
stage         ``loading-model`` | ``running`` | ``encoding`` | ``uploading``
step, steps   sampler step done and the steps of the run (diffusers, ComfyUI, A1111)
frames_done   video frames encoded so far, of ``frames``
percent       0..100: the backend's own figure, else ``step / steps`` or ``frames_done / frames``
eta_s         seconds left, estimated from the rate since the stage began (None until two reports)
============  ====================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STAGES = ("loading-model", "running", "encoding", "uploading")
EVENT_PERCENT_STEP = 10  # a progress event per 10 % bucket (plus one per stage change): at most ~14 per attempt


@dataclass(frozen=True)
class Progress:
    stage: str = "running"
    step: int | None = None
    steps: int | None = None
    frames_done: int | None = None
    frames: int | None = None
    percent: float | None = None
    eta_s: float | None = None

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"progress stage {self.stage!r} is not one of {', '.join(STAGES)}")

    def fraction(self) -> float | None:
        """Done, 0..1: the backend's percent, else steps, else frames (None when nothing says)."""
        if self.percent is not None:
            return _clamp(self.percent / 100.0)
        if self.step is not None and self.steps:
            return _clamp(self.step / self.steps)
        if self.frames_done is not None and self.frames:
            return _clamp(self.frames_done / self.frames)
        return None

    def bucket(self) -> int:
        """The ``EVENT_PERCENT_STEP`` bucket this report falls in (-1: no figure yet)."""
        done = self.fraction()
        return -1 if done is None else int(done * 100 + 1e-9) // EVENT_PERCENT_STEP

    def as_dict(self) -> dict[str, Any]:
        done = self.fraction()
        out: dict[str, Any] = {"stage": self.stage}
        for name in ("step", "steps", "frames_done", "frames"):
            value = getattr(self, name)
            if value is not None:
                out[name] = int(value)
        if done is not None:
            out["percent"] = round(done * 100, 1)
        if self.eta_s is not None:
            out["eta_s"] = round(max(0.0, self.eta_s), 1)
        return out


def _clamp(value: float) -> float:
    return max(0.0, min(1.0, value))
