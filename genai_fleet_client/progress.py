"""The ``genai-fleet`` command's progress bar (tqdm, on stderr), drawn from what the job API reports.

Workers do not report steps yet, so the bar has the job's phases as its steps: ``submitted``,
``running``, ``done`` (1, 2, 3 of 3), with the attempt and, while queued, the API's queue figures.
A job handed back (its worker died, or a spot interruption) goes back to ``queued`` and the bar with
it; the next attempt moves it forward again. Each change of phase or attempt is also written as a line.
"""

from __future__ import annotations

from typing import IO, Any

from tqdm import tqdm

from genai_fleet_client.types import Job

PHASES = {"queued": 1, "running": 2, "succeeded": 3, "failed": 3, "canceled": 3}


class JobProgress:
    def __init__(self, file: IO[str], disable: bool = False):
        self._bar: Any = tqdm(total=3, file=file, disable=disable, unit="phase", dynamic_ncols=True,
                              bar_format="{desc} |{bar}| {n}/{total} phases [{elapsed}]{postfix}")
        self._last: tuple[str, int] | None = None
        self._disable = disable
        self._file = file

    def update(self, job: Job) -> None:
        state = (job.status, job.attempts)
        if state != self._last:
            if not self._disable:
                self._bar.write(_line(job, self._last), file=self._file)
            self._last = state
        self._bar.set_description_str(f"{job.id} {job.status}", refresh=False)
        self._bar.set_postfix_str(_postfix(job), refresh=False)
        self._bar.n = PHASES.get(job.status, 1)
        self._bar.refresh()

    def note(self, text: str) -> None:
        if not self._disable:
            self._bar.write(text, file=self._file)

    def close(self) -> None:
        self._bar.close()


def _line(job: Job, last: tuple[str, int] | None) -> str:
    if job.status == "queued" and last is not None and last[0] == "running":
        return f"{job.id}: handed back after attempt {last[1]}; queued again"
    if job.status == "running":
        return f"{job.id}: running (attempt {job.attempts})"
    return f"{job.id}: {job.status}"


def _postfix(job: Job) -> str:
    parts = [f"attempt {job.attempts}"] if job.attempts else []
    queue = job.queue or {}
    if job.status == "queued" and "queue_depth" in queue:
        parts.append(f"{queue['queue_depth']} queued")
    if job.status == "queued" and "estimated_wait_seconds" in queue:
        parts.append(f"~{queue['estimated_wait_seconds']:.0f}s wait")
    if job.cancel_requested and not job.done:
        parts.append("cancel requested")
    return ", ".join(parts)


def describe_event(event: dict[str, Any]) -> str:
    """One line for an event of ``GET /v1/jobs/{id}/events``: its cursor (to resume with ``--after``), attempt, what."""
    head = f"{event.get('cursor')}  attempt {event.get('attempt') or '-'}  "
    if event.get("kind") == "status":
        tail = event.get("status", "?")
        if event.get("error"):
            tail += f"  {event['error'].get('code')}: {event['error'].get('message')}"
        elif event.get("outputs"):
            tail += "  " + " ".join(event["outputs"])
        return head + tail
    parts = [str(event.get("stage", "progress"))]
    if event.get("steps"):
        parts.append(f"step {event.get('step')}/{event['steps']}")
    if event.get("frames"):
        parts.append(f"frame {event.get('frames_done')}/{event['frames']}")
    if event.get("percent") is not None:
        parts.append(f"{event['percent']:g} %")
    if event.get("eta_s") is not None:
        parts.append(f"eta {event['eta_s']:g} s")
    return head + "  ".join(parts)
