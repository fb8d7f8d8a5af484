"""Agent throughput benchmark: test-pattern backend, saturated SQS queue on a local moto server.

Prints (never asserts) the agent's throughput against the bare backend's (``backend.run`` called
back to back on the same backend, same run), the backend busy fraction (backend time / wall time) while
the queue is saturated, and per-phase timings p50 (receive, mark running, inputs, model, run, upload,
record, ack) so the next bottleneck is visible. With the pipelined agent, receive, inputs and the model
happen on the prefetch thread and upload / record / ack on the settle lane, beside the next inference.
Bounded: ``--jobs`` jobs, stops early at ``--budget`` seconds.

    .venv/bin/python bench/bench_agent.py [--jobs 100] [--delay 0.05] [--out bench/results/agent.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_EC2_METADATA_DISABLED": "true"})


PHASES = (("receive", "receive_ms"), ("mark_running", "mark_running_ms"), ("inputs", "inputs_ms"),
          ("model", "model_load_ms"), ("run", "inference_ms"), ("upload", "upload_ms"), ("record", "record_ms"),
          ("ack", "ack_ms"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(agent: Any, args: argparse.Namespace) -> tuple[list[Any], float]:
    agent.boot()
    started = time.monotonic()
    budget = threading.Timer(args.budget, agent.stop)
    budget.daemon = True
    budget.start()
    agent.run(max_jobs=args.jobs)
    budget.cancel()
    return [s for s in agent.stats if s.outcome == "succeeded"], time.monotonic() - started


def _busy(done: list) -> float | None:
    """Backend time over the saturated window: first backend.run start to last end (the agent's start-up
    receive and the last job's settle are outside it; they are in ``..._incl_start_and_tail``)."""
    spans = [s.run_span for s in done if s.run_span]
    if len(spans) < 2:
        return None
    window = max(e for _, e in spans) - min(b for b, _ in spans)
    return round(sum(e - b for b, e in spans) / window, 3)


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"moto server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"moto server not listening on {port} after {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.05, help="test-pattern backend time per job (s)")
    parser.add_argument("--budget", type=float, default=45.0, help="stop the agent after this many seconds")
    parser.add_argument("--prefetch", type=int, default=1, help="prefetch_jobs (0: the serial agent)")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from fleetdev.worker_support import Stack, make_agent
    from runtime.backends.base import JobContext
    from runtime.backends.test_pattern import TestPatternBackend
    from runtime.jobs.schema import JobSpec
    from runtime.worker.progress_reporter import ProgressReporter

    port = _free_port()
    # moto in its own process, as AWS is outside the agent's: in-process it would compete for the agent's GIL
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_port(port, server)
        stack = Stack(f"http://127.0.0.1:{port}")
        config = stack.config(test_pattern_delay_seconds=args.delay, cancel_poll_seconds=0.5,
                              prefetch_jobs=args.prefetch)
        backend = TestPatternBackend(config)
        spec = {"model": "sd15", "inputs": {"prompt": "bench", "width": 64, "height": 64, "seed": 1}}
        bare = []
        bare_started = time.monotonic()
        for i in range(args.jobs):  # as many samples as the agent's, so both p99 are over the same count
            t = time.monotonic()
            backend.run(JobContext(f"j_bare{i}", JobSpec.parse(spec)))
            bare.append(time.monotonic() - t)
        bare_rate = len(bare) / (time.monotonic() - bare_started)
        job_ids = [stack.submit() for _ in range(args.jobs)]
        done, wall = _run(make_agent(stack, config, backend=backend), args)
        # The same with progress on (issue 38): every job's steps reported, its events written to the event log by
        # the reporter's flush thread; the busy fraction must not drop against the run above
        [stack.submit() for _ in range(args.jobs)]
        reporter = ProgressReporter(stack.events, interval_s=config.progress_interval_seconds)
        on_done, on_wall = _run(make_agent(stack, config, backend=backend, progress=reporter), args)
        reporter.stop()
        # The same again with claim_ahead and overlap_settle off (the defaults before the run markers): the claim
        # and the settle back on the backend's path, for comparison
        [stack.submit() for _ in range(args.jobs)]
        serial_settle = replace(config, claim_ahead=False, overlap_settle=False)
        off_done, off_wall = _run(make_agent(stack, serial_settle, backend=backend), args)
        overhead = [(s.handle_s - s.backend_s) * 1000 for s in done]
        backend_ms = [s.backend_s * 1000 for s in done]
        phases = {name: round(_pct([s.timings[key] for s in done if key in (s.timings or {})], 50), 2)
                  for name, key in PHASES if any(key in (s.timings or {}) for s in done)}
        throughput = len(done) / wall if wall else 0.0
        figures = {
            "jobs": len(done), "submitted": len(job_ids), "wall_s": round(wall, 2),
            "prefetch_jobs": config.prefetch_jobs,
            "backend_delay_s": args.delay,
            "bare_backend_ms": {"p50": round(_pct([b * 1000 for b in bare], 50), 2),
                                "p99": round(_pct([b * 1000 for b in bare], 99), 2)},
            "agent_backend_ms": {"p50": round(_pct(backend_ms, 50), 2), "p99": round(_pct(backend_ms, 99), 2)},
            "agent_overhead_ms": {"p50": round(_pct(overhead, 50), 2), "p99": round(_pct(overhead, 99), 2),
                                  "mean": round(statistics.fmean(overhead), 2)} if overhead else None,
            "backend_busy_fraction": _busy(done),
            "backend_busy_fraction_incl_start_and_tail": round(sum(s.backend_s for s in done) / wall, 3),
            "throughput_jobs_per_s": round(throughput, 2),
            "bare_backend_jobs_per_s": round(bare_rate, 2),
            "throughput_ratio_vs_bare_backend": round(throughput / bare_rate, 3) if bare_rate else None,
            "phase_p50_ms": phases,
            "progress_on_backend_busy_fraction": _busy(on_done),
            "progress_on_throughput_ratio_vs_bare_backend": round(len(on_done) / on_wall / bare_rate, 3)
            if bare_rate and on_wall else None,
            "progress_on_event_batches_written": reporter.writes,
            "claim_and_settle_on_path_backend_busy_fraction": _busy(off_done),
            "claim_and_settle_on_path_throughput_ratio_vs_bare_backend": round(len(off_done) / off_wall / bare_rate, 3)
            if bare_rate and off_wall else None,
            # the overhead (handling minus backend time) has no bare counterpart: no ratio against bare_backend_ms
            "unpaired": ["agent_overhead_ms"],
            "note": "moto server (own process) on loopback stands in for SQS/DynamoDB/S3; AWS round trips are slower",
        }
    finally:
        server.terminate()
        server.wait(10)
    print(json.dumps(figures, indent=2))
    print("per-phase p50 (ms): " + ", ".join(f"{k} {v}" for k, v in figures["phase_p50_ms"].items()))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
