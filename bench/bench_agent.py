"""Agent overhead benchmark: test-pattern backend, saturated SQS queue on a local moto server.

Prints (never asserts) the agent's overhead per job — time from pick-up to acknowledgement minus the
time inside the backend, p50/p99 — and the backend busy fraction (backend time / wall time) while the
queue is saturated, with the bare backend (``backend.run`` called directly) as the same-run baseline.
Bounded: ``--jobs`` jobs, stops early at ``--budget`` seconds.

    .venv/bin/python bench/bench_agent.py [--jobs 60] [--delay 0.05] [--out bench/results/agent.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import statistics
import threading
import time
from pathlib import Path

os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
                   "AWS_EC2_METADATA_DISABLED": "true"})


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--delay", type=float, default=0.05, help="test-pattern backend time per job (s)")
    parser.add_argument("--budget", type=float, default=45.0, help="stop the agent after this many seconds")
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)

    from fleetdev.worker_support import Stack, make_agent
    from runtime.backends.base import JobContext
    from runtime.backends.test_pattern import TestPatternBackend

    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        stack = Stack(f"http://127.0.0.1:{port}")
        config = stack.config(test_pattern_delay_seconds=args.delay, cancel_poll_seconds=0.5)
        backend = TestPatternBackend(config)
        spec = {"model": "sd15", "inputs": {"prompt": "bench", "width": 64, "height": 64, "seed": 1}}
        bare = []
        for i in range(min(args.jobs, 30)):
            t = time.monotonic()
            backend.run(JobContext(f"j_bare{i}", spec))
            bare.append(time.monotonic() - t)
        job_ids = [stack.submit() for _ in range(args.jobs)]
        agent = make_agent(stack, config, backend=backend)
        agent.boot()
        started = time.monotonic()
        budget = threading.Timer(args.budget, agent.stop)
        budget.daemon = True
        budget.start()
        agent.run(max_jobs=args.jobs)
        budget.cancel()
        wall = time.monotonic() - started
        done = [s for s in agent.stats if s.outcome == "succeeded"]
        overhead = [(s.handle_s - s.backend_s) * 1000 for s in done]
        backend_ms = [s.backend_s * 1000 for s in done]
        figures = {
            "jobs": len(done), "submitted": len(job_ids), "wall_s": round(wall, 2),
            "backend_delay_s": args.delay,
            "bare_backend_ms": {"p50": round(_pct([b * 1000 for b in bare], 50), 2),
                                "p99": round(_pct([b * 1000 for b in bare], 99), 2)},
            "agent_backend_ms": {"p50": round(_pct(backend_ms, 50), 2), "p99": round(_pct(backend_ms, 99), 2)},
            "agent_overhead_ms": {"p50": round(_pct(overhead, 50), 2), "p99": round(_pct(overhead, 99), 2),
                                  "mean": round(statistics.fmean(overhead), 2)} if overhead else None,
            "backend_busy_fraction": round(sum(s.backend_s for s in done) / wall, 3) if wall else None,
            "throughput_jobs_per_s": round(len(done) / wall, 2) if wall else None,
            "note": "moto server on loopback stands in for SQS/DynamoDB/S3; AWS round trips are slower",
        }
    finally:
        server.stop()
    print(json.dumps(figures, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
