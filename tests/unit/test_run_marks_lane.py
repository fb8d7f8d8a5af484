"""The run-marker lane (runtime.worker.run_marks): writes in the order they were put, off the caller's thread,
and survives a store that fails."""

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


def test_markers_are_written_in_order_on_the_lane_not_the_caller():
    gate = threading.Event()
    store = RecordingStore(gate=gate)
    marks = RunMarks(store)
    marks.began("a", 1)
    marks.finished("a", 1)  # the caller goes on at once: nothing was written yet
    marks.began("b", 4)
    assert store.writes == []
    gate.set()
    marks.wait()
    assert store.writes == [("began", "a", 1), ("finished", "a", 1), ("began", "b", 4)]
    assert store.threads == {"run-marks"}
    marks.close()


def test_a_failing_write_is_logged_and_the_lane_goes_on(caplog):
    store = RecordingStore(fail_on={"a"})
    marks = RunMarks(store)
    marks.finished("a", 1)
    marks.began("b", 2)
    marks.close()  # writes what was put, then ends
    assert store.writes == [("began", "b", 2)]
    assert "could not mark the run finished" in caplog.text
