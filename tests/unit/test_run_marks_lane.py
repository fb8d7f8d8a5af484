"""The run-marker lanes (runtime.worker.run_marks): each kind written in the order put, off the caller's
thread, the two kinds side by side; a store that fails does not end them."""

from __future__ import annotations

import threading

from runtime.jobs.errors import StoreUnavailableError
from runtime.worker.run_marks import RunMarks


class RecordingStore:
    def __init__(self, fail_on: set[str] | None = None, gate: threading.Event | None = None) -> None:
        self.writes: list[tuple[str, str, int]] = []
        self.threads: set[str] = set()
        self.fail_on = fail_on or set()
        self.gate = gate

    def _write(self, what: str, job_id: str, lease: int) -> bool:
        if self.gate is not None:
            assert self.gate.wait(30)
        self.threads.add(threading.current_thread().name)
        if job_id in self.fail_on:
            raise StoreUnavailableError(f"{what} {job_id}")
        self.writes.append((what, job_id, lease))
        return True

    def mark_run_began(self, job_id: str, lease: int) -> bool:
        return self._write("began", job_id, lease)

    def mark_run_finished(self, job_id: str, lease: int) -> bool:
        return self._write("finished", job_id, lease)


def test_markers_are_written_in_order_on_the_lanes_not_the_caller():
    gate = threading.Event()
    store = RecordingStore(gate=gate)
    marks = RunMarks(store)
    marks.began("a", 1)
    marks.finished("a", 1)  # the caller goes on at once: nothing was written yet
    marks.began("b", 4)
    marks.finished("b", 4)
    assert store.writes == []
    gate.set()
    marks.wait()
    assert [w for w in store.writes if w[0] == "began"] == [("began", "a", 1), ("began", "b", 4)]
    assert [w for w in store.writes if w[0] == "finished"] == [("finished", "a", 1), ("finished", "b", 4)]
    assert store.threads == {"run-marks-began", "run-marks-finished"}
    marks.close()


def test_a_began_marker_does_not_wait_behind_a_slow_finished_one():
    store = RecordingStore()
    slow = threading.Event()
    finished = store.mark_run_finished
    store.mark_run_finished = lambda job_id, lease: slow.wait(30) and finished(job_id, lease)
    marks = RunMarks(store)
    marks.finished("a", 1)  # N's marker is slow to land
    marks.began("b", 2)  # N+1's is written meanwhile
    deadline = threading.Event()
    for _ in range(300):
        if ("began", "b", 2) in store.writes:
            break
        deadline.wait(0.1)
    assert store.writes == [("began", "b", 2)]
    slow.set()
    marks.close()
    assert store.writes == [("began", "b", 2), ("finished", "a", 1)]


def test_a_failing_write_is_logged_and_the_lane_goes_on(caplog):
    store = RecordingStore(fail_on={"a"})
    marks = RunMarks(store)
    marks.finished("a", 1)
    marks.began("b", 2)
    marks.close()  # writes what was put, then ends
    assert store.writes == [("began", "b", 2)]
    assert "could not mark the run finished" in caplog.text
