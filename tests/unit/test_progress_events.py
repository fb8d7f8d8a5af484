"""Issue 38: the progress shape, the per-attempt reporter (coalesced, off the backend's path) and the event log
(ordered across attempts by lease, resumable by cursor, no events after final)."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from runtime.jobs.events import (
    FINAL_CURSOR,
    QUEUED_CURSOR,
    CursorError,
    EventLog,
    create_events_table,
    events_after,
    make_cursor,
    parse_cursor,
)
from runtime.jobs.output_links import OutputLinks
from runtime.jobs.progress import Progress
from runtime.worker.progress_reporter import ProgressReporter

LINKS = OutputLinks("https://cdn")


class MemoryLog:
    """The EventLog's two methods over a dict, for the reporter's unit tests (the real one is tested below)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, dict[str, Any]]] = {}
        self.calls = 0
        self.fail = 0
        self.lock = threading.Lock()

    def append(self, job_id: str, events: list[dict[str, Any]]) -> None:
        with self.lock:
            self.calls += 1
            if self.fail:
                self.fail -= 1
                raise RuntimeError("throttled")
            for e in events:
                self.items.setdefault(job_id, {})[e["cursor"]] = e

    def events(self, job_id: str) -> list[dict[str, Any]]:
        return [v for _, v in sorted(self.items.get(job_id, {}).items())]


# -- the shape --------------------------------------------------------------------------------------------
def test_progress_shape_from_steps_frames_or_percent():
    assert Progress(step=15, steps=30).as_dict() == {"stage": "running", "step": 15, "steps": 30, "percent": 50.0}
    assert Progress("encoding", frames_done=6, frames=24).as_dict()["percent"] == 25.0
    assert Progress(percent=250).fraction() == 1.0
    assert Progress("loading-model").as_dict() == {"stage": "loading-model"}
    with pytest.raises(ValueError, match="stage 'sampling' is not one of loading-model, running"):
        Progress("sampling")


# -- the reporter -----------------------------------------------------------------------------------------
def test_a_30_step_run_keeps_one_event_per_ten_percent_monotone_ending_at_100():
    log = MemoryLog()
    reporter = ProgressReporter(log, interval_s=60)  # the flush thread never runs: close writes everything
    sink = reporter.begin("j1", lease=3, attempt=1)
    for step in range(1, 31):
        sink(Progress(step=step, steps=30))
    assert log.calls == 0  # reports never write on the backend's thread
    assert reporter.close("j1", 3)
    events = log.events("j1")
    assert events[0]["cursor"] == "000003.000000" and events[0]["data"] == {"status": "running"}
    progress = [e["data"] for e in events if e["kind"] == "progress"]
    assert 5 <= len(progress) <= 11  # one per 10 % bucket, not one per step
    percents = [p["percent"] for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert all(e["attempt"] == 1 for e in events)
    assert [e["cursor"] for e in events] == sorted(e["cursor"] for e in events)
    assert log.calls == 1  # one BatchWriteItem for the attempt's events


def test_no_events_after_the_attempt_closed():
    log = MemoryLog()
    reporter = ProgressReporter(log, interval_s=60)
    sink = reporter.begin("j1", lease=1, attempt=1)
    sink(Progress(step=1, steps=10))
    reporter.close("j1", 1)
    before = log.events("j1")
    sink(Progress(step=9, steps=10))  # a backend thread that reports late
    reporter.report("j1", 1, Progress("uploading"))
    reporter.close("j1", 1)
    assert log.events("j1") == before


def test_a_failed_write_is_retried_at_the_next_flush_in_order():
    log = MemoryLog()
    log.fail = 1
    reporter = ProgressReporter(log, interval_s=60)
    sink = reporter.begin("j1", lease=2, attempt=1)
    sink(Progress(step=5, steps=10))
    assert not reporter._flush(reporter._attempts[("j1", 2)], 0.0)  # throttled: kept
    sink(Progress(step=10, steps=10))
    assert reporter.close("j1", 2)
    cursors = [e["cursor"] for e in log.events("j1")]
    assert cursors == ["000002.000000", "000002.000001", "000002.000002"]


def test_a_report_that_raises_never_reaches_the_backend():
    from tests.job_context import job_context

    ctx = job_context()

    def broken(_: Progress) -> None:
        raise RuntimeError("store down")

    ctx.progress = broken
    ctx.report(step=1, steps=2)  # no exception
    ctx.report("no-such-stage")  # a bad stage is dropped too


def test_eta_is_estimated_from_the_rate_of_the_stage():
    now = [100.0]
    reporter = ProgressReporter(MemoryLog(), interval_s=60, monotonic=lambda: now[0])
    sink = reporter.begin("j1", lease=1, attempt=1)
    sink(Progress(step=0, steps=10))
    now[0] = 104.0
    sink(Progress(step=4, steps=10))
    latest = reporter.latest("j1", 1)
    assert latest is not None and latest.eta_s == pytest.approx(6.0)


# -- cursors and the merged view ------------------------------------------------------------------------------
def test_cursors_sort_by_lease_then_sequence_and_bad_ones_are_refused():
    assert make_cursor(2, 999) < make_cursor(3, 0) < FINAL_CURSOR
    assert parse_cursor(None) is None and parse_cursor("000003.000012") == "000003.000012"
    for bad in ("3", "abc", "000003.00001", "000003.000012x", "' OR 1=1"):
        with pytest.raises(CursorError, match="after must be a cursor"):
            parse_cursor(bad)


def test_the_view_adds_queued_first_and_the_final_status_last_then_nothing():
    stored = [{"cursor": make_cursor(1, 0), "kind": "status", "status": "running", "attempt": 1}]
    running = {"status": "running", "created_at": 1.0, "attempts": 1}
    assert [e["cursor"] for e in events_after(running, stored, None, LINKS)] == [QUEUED_CURSOR, "000001.000000"]
    final = {**running, "status": "succeeded", "outputs": [{"url": "https://cdn/x.png"}]}  # from before issue 43
    seen = events_after(final, stored, "000001.000000", LINKS)
    assert seen == [{"cursor": FINAL_CURSOR, "kind": "status", "status": "succeeded", "attempt": 1, "at": None,
                     "outputs": ["https://cdn/x.png"]}]
    assert events_after(final, stored, FINAL_CURSOR, LINKS) == []


# -- the real table (moto) --------------------------------------------------------------------------------------
@pytest.fixture
def event_log(aws_clients: Any) -> EventLog:
    client = aws_clients("dynamodb")
    name = f"events-{uuid.uuid4().hex[:10]}"
    create_events_table(client, name)
    return EventLog(name, client)


def test_event_log_reads_after_a_cursor_across_attempts(event_log: EventLog):
    reporter = ProgressReporter(event_log, interval_s=60)
    for lease, attempt in ((1, 1), (2, 2)):  # attempt 1 killed mid-run: its events stay, the retry's follow
        sink = reporter.begin("job-a", lease=lease, attempt=attempt)
        for step in range(1, 11 if lease == 2 else 5):
            sink(Progress(step=step, steps=10))
        reporter.close("job-a", lease)
    everything = event_log.after("job-a", None)
    cursors = [e["cursor"] for e in everything]
    assert cursors == sorted(cursors) and len(set(cursors)) == len(cursors)
    middle = cursors[len(cursors) // 2]
    resumed = event_log.after("job-a", middle)
    assert [e["cursor"] for e in resumed] == [c for c in cursors if c > middle]  # nothing lost, none repeated
    assert {e["attempt"] for e in resumed} == {2}
    latest = event_log.latest_progress("job-a")
    assert latest is not None and latest["percent"] == 100.0 and latest["attempt"] == 2
    assert event_log.after("job-b", None) == []
