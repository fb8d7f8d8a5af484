"""The sync wait reads the record around the job's expected end, not on a fixed schedule."""

from __future__ import annotations

import itertools

from runtime.api.sync_wait import FAST_S, FIRST_S, MAX_S, WaitPacer


def _final(model: str, started: float, completed: float, steps: int = 30) -> dict:
    return {"status": "succeeded", "model": model, "last_started_at": started, "completed_at": completed,
            "spec": {"model": model, "task": "txt2img", "inputs": {"steps": steps, "width": 1024}}}


def test_learns_the_expected_run_per_model_from_succeeded_records():
    p = WaitPacer(alpha=0.5)
    p.observe(_final("sdxl", 100.0, 101.5))
    p.observe(_final("sdxl", 200.0, 202.5))
    p.observe({"status": "failed", "model": "sdxl", "last_started_at": 1.0, "completed_at": 1.1})
    p.observe(_final("turbo", 10.0, 10.4))
    assert p.expected(_final("sdxl", 0, 0)) == 2.0 and abs(p.expected(_final("turbo", 0, 0)) - 0.4) < 1e-9
    assert p.expected({"model": "other"}) is None


def test_the_expected_run_is_per_job_shape_with_the_model_as_fallback():
    p = WaitPacer()
    p.observe(_final("sdxl", 0.0, 2.0, steps=50))
    p.observe(_final("sdxl", 0.0, 0.8, steps=20))
    assert p.expected(_final("sdxl", 0, 0, steps=20)) == 0.8 and p.expected(_final("sdxl", 0, 0, steps=50)) == 2.0
    fallback = p.expected(_final("sdxl", 0, 0, steps=30))
    assert fallback is not None and 0.8 < fallback < 2.0


def test_sleeps_until_just_before_the_expected_end_then_reads_fast_then_backs_off():
    p = WaitPacer()
    p.observe(_final("m", 0.0, 1.0))
    running = {**_final("m", 0, 0), "status": "running", "last_started_at": 50.0}
    assert p.next_delay(None, 50.0, None) == FIRST_S
    early = p.next_delay(running, 50.2, FIRST_S)
    assert abs(early - 0.8) < 1e-9  # one read lands at the expected end, 51.0
    assert p.next_delay(running, 50.995, early) == FAST_S  # around the end: every 10 ms
    assert p.next_delay(running, 51.1, FAST_S) == FAST_S  # up to max(0.15 s, expected / 4) late
    late = p.next_delay(running, 53.0, FAST_S)
    assert FAST_S < late <= MAX_S  # well past it: a quarter of the overrun


def test_reads_per_request_stay_few():
    """A 1.5 s job that ends 30 ms after its expected end: count the reads a waiting request makes."""
    p = WaitPacer()
    p.observe(_final("m", 0.0, 1.5))
    now, delay, reads, record = 0.0, None, 0, None
    while True:
        delay = p.next_delay(record, now, delay)
        now += delay
        reads += 1
        if now >= 1.53:
            break
        record = {**_final("m", 0, 0), "status": "running", "last_started_at": 0.02} if now > 0.02 else \
            {**_final("m", 0, 0), "status": "queued"}
    assert reads <= 8, reads
    assert now - 1.53 <= FAST_S + 1e-9  # answered within one fast interval of the final write


def test_no_estimate_grows_geometrically_and_is_capped():
    p = WaitPacer()
    running = {"status": "running", "model": "new", "last_started_at": 1.0}
    delays, d = [], FIRST_S
    for _ in range(12):
        d = p.next_delay(running, 2.0, d)
        delays.append(d)
    assert delays[0] == FIRST_S * 1.5 and delays[-1] == MAX_S
    assert all(b >= a for a, b in itertools.pairwise(delays))
