"""Typed results: the job (``GET /v1/jobs/{id}``) and a page of jobs (``GET /v1/jobs``), as the API sends them.

``Job.raw`` keeps the whole document, so a field added by a newer API is still reachable.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = frozenset({"succeeded", "failed", "canceled"})


@dataclass(frozen=True)
class Output:
    url: str
    content_type: str | None = None
    generator: str | None = None


@dataclass(frozen=True)
class Job:
    id: str
    status: str
    model: str | None = None
    task: str | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    attempts: int = 0
    cancel_requested: bool = False
    outputs: list[Output] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: dict[str, str] | None = None
    queue: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in FINAL_STATUSES

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> Job:
        return cls(id=str(data["id"]), status=str(data["status"]), model=data.get("model"), task=data.get("task"),
                   inputs=dict(data.get("inputs") or {}), created_at=data.get("created_at"),
                   started_at=data.get("started_at"), completed_at=data.get("completed_at"),
                   attempts=int(data.get("attempts") or 0), cancel_requested=bool(data.get("cancel_requested")),
                   outputs=[Output(url=str(o["url"]), content_type=o.get("content_type"),
                                   generator=o.get("generator")) for o in data.get("outputs") or []],
                   timings=dict(data.get("timings") or {}), error=data.get("error"), queue=data.get("queue"),
                   raw=dict(data))


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_cursor: str | None

    @classmethod
    def from_api(cls, data: Mapping[str, Any]) -> JobPage:
        return cls(jobs=[Job.from_api(j) for j in data.get("jobs") or []], next_cursor=data.get("next_cursor"))
