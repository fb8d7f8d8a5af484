"""Benchmark: the whole platform in local mode (API, queue, two agents, S3, CDN) against the bare backend.

Two phases on one local-mode platform (SQS, test-pattern backend), each next to a baseline measured in
the same run on the same machine:

- latency: sequential sync jobs (``Prefer: wait=20``), client-observed submit -> final answer, against
  the bare test-pattern render (``backend.run`` called directly, same size and delay);
- throughput: a burst of async jobs queued while the agents are held (SIGSTOP), released at once, until all
  are final (last ``completed_at``), against the ideal the agents could reach if they added nothing
  (workers / bare render time); and the same burst submitted through the API while the agents run
  (submission included: on a loaded 2-core machine the API's create rate can be the bound).

Figures are printed and written as JSON (``--out``), never asserted. Everything runs on loopback with
moto standing in for AWS, so the platform's figures include moto's own cost; they are not a
prediction of latency on AWS. Bounded: about half a minute.

    .venv/bin/python bench/bench_local.py [--jobs 40] [--sync 10] [--delay 0.2] [--out FILE]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


PHASES = ("queue_wait_ms", "receive_ms", "mark_running_ms", "inputs_ms", "model_load_ms", "inference_ms", "upload_ms",
          "record_ms", "ack_ms")


def _epoch(iso: str | None) -> float:
    return dt.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else 0.0


def _submit_parallel(ledger: Any, n: int, size: int, label: str) -> list[str]:
    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda i: ledger.submit(prompt=f"{label} {i}", width=size, height=size, seed=i)["id"],
                             range(n)))


def _last_completed(views: dict[str, dict[str, Any]]) -> float:
    ended = [_epoch(v.get("completed_at")) for v in views.values() if v["status"] == "succeeded"]
    return max(ended) if ended else time.time()


def _wait_final(ledger: Any, job_ids: list[str], timeout: float, interval: float = 0.25) -> dict[str, dict[str, Any]]:
    """Every job's final view, polling one job at a time (in submission order, the order they finish in).

    Why not ``ledger.wait_final`` (a GET of every pending job every round): on this 2-core machine each GET
    costs the API and moto CPU that the two agents under test need (on AWS the API runs elsewhere), and the
    drain figure comes from the records' ``completed_at``, which polling less does not change."""
    deadline = time.monotonic() + timeout
    views: dict[str, dict[str, Any]] = {}
    for job_id in job_ids:
        while True:
            views[job_id] = ledger.get(job_id, retry_for=max(0.0, min(5.0, deadline - time.monotonic())))
            if views[job_id]["status"] in ("succeeded", "failed", "canceled") or time.monotonic() > deadline:
                break
            time.sleep(interval)
    return views


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def tail(values: list[float], q: float = 99) -> tuple[str, float]:
    """(name, value) of the q-th percentile, or ("max of N", the maximum) when N samples are too few to tell
    them apart (fewer than 100 / (100 - q): ten sync jobs have no p99, only a maximum)."""
    if len(values) < 100 / (100 - q):
        return f"max of {len(values)}", max(values)
    return f"p{q:g}", _pct(values, q)


def bare_render_ms(delay: float, size: int, runs: int) -> list[float]:
    from runtime.backends.base import JobContext
    from runtime.backends.test_pattern import TestPatternBackend
    from runtime.jobs.schema import JobSpec

    backend = TestPatternBackend(delay_seconds=delay)
    spec = {"model": "bench", "inputs": {"prompt": "bench", "width": size, "height": size, "seed": 1}}
    out = []
    for i in range(runs):
        t = time.perf_counter()
        backend.run(JobContext(f"j_bare{i}", JobSpec.parse(spec)))
        out.append((time.perf_counter() - t) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=40, help="async jobs in the throughput burst")
    parser.add_argument("--sync", type=int, default=10, help="sequential sync jobs for latency")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.2, help="test-pattern seconds per image")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    from fleetdev.local.platform import LocalOptions, LocalPlatform

    bare = bare_render_ms(args.delay, args.size, max(5, args.sync))
    bare_p50 = _pct(bare, 50)
    options = LocalOptions(workers=args.workers, test_pattern_delay_seconds=args.delay, versioned_outputs=False)
    with LocalPlatform(options) as platform:
        ledger = platform.ledger
        ledger.submit(prompt="warm-up", width=args.size, height=args.size, wait=20)
        latencies, sync_views = [], []
        for i in range(args.sync):
            t = time.perf_counter()
            view = ledger.submit(prompt=f"sync {i}", width=args.size, height=args.size, seed=i, wait=20)
            latencies.append((time.perf_counter() - t) * 1000)
            sync_views.append(view)
            if view["status"] != "succeeded":
                raise SystemExit(f"sync job {view['id']} ended {view['status']}")
        # Burst drain: 40 jobs queued while both agents are held (SIGSTOP), then released at once; the fleet's
        # throughput is 40 / (release -> last completed_at, same machine clock), against 2 / bare render.
        for w in platform.workers:
            w.process.signal(signal.SIGSTOP)
        try:
            ids = _submit_parallel(ledger, args.jobs, args.size, "drain")
        finally:
            released = time.time()
            for w in platform.workers:
                w.process.signal(signal.SIGCONT)
        views = _wait_final(ledger, ids, timeout=120)
        drain_s, done = _last_completed(views) - released, sum(v["status"] == "succeeded" for v in views.values())
        worker_ms = [v["timings"].get("total_ms", 0.0) for v in views.values() if v["status"] == "succeeded"]
        # The same burst through the API while the agents run: submission included (the API's create rate on
        # this machine bounds it when it is slower than the fleet).
        t0 = time.time()
        ids = _submit_parallel(ledger, args.jobs, args.size, "burst")
        views = _wait_final(ledger, ids, timeout=120)
        burst_s, done_api = _last_completed(views) - t0, sum(v["status"] == "succeeded" for v in views.values())
        phases = {k: round(_pct([v["timings"][k] for v in sync_views if k in v.get("timings", {})], 50), 1)
                  for k in PHASES if any(k in v.get("timings", {}) for v in sync_views)}
    throughput = done / drain_s if drain_s > 0 else 0.0
    throughput_api = done_api / burst_s if burst_s > 0 else 0.0
    ideal = args.workers / (bare_p50 / 1000)
    sync_tail, bare_tail = tail(latencies), tail(bare)
    figures = [
        {"metric": "sync job, submit to answer, p50", "value": round(_pct(latencies, 50), 1), "unit": "ms",
         "baseline_metric": "bare render p50", "baseline_value": round(bare_p50, 1)},
        {"metric": f"sync job, submit to answer, {sync_tail[0]}", "value": round(sync_tail[1], 1), "unit": "ms",
         "baseline_metric": f"bare render {bare_tail[0]}", "baseline_value": round(bare_tail[1], 1)},
        {"metric": "platform overhead per sync job, p50", "value": round(_pct(latencies, 50) - bare_p50, 1),
         "unit": "ms"},
        {"metric": "agent time per job (pick-up to final), p50", "value": round(_pct(worker_ms, 50), 1),
         "unit": "ms", "baseline_metric": "bare render p50", "baseline_value": round(bare_p50, 1)},
        {"metric": f"burst of {args.jobs} queued, drained: throughput", "value": round(throughput, 2),
         "unit": "jobs/s", "baseline_metric": f"ideal ({args.workers} workers / bare render)",
         "baseline_value": round(ideal, 2)},
        {"metric": f"burst of {args.jobs} through the API (8 clients, submission included): throughput",
         "value": round(throughput_api, 2), "unit": "jobs/s",
         "baseline_metric": f"ideal ({args.workers} workers / bare render)", "baseline_value": round(ideal, 2)},
    ]
    figures += [{"metric": f"sync job phase p50: {k.removesuffix('_ms')}", "value": v, "unit": "ms"}
                for k, v in phases.items()]
    result = {"name": "local", "workers": args.workers, "jobs": args.jobs, "backend_delay_s": args.delay,
              "figures": figures, "succeeded": done, "mean_sync_ms": round(statistics.fmean(latencies), 1),
              "note": "whole platform on loopback (moto for AWS, test-pattern backend); not a prediction of AWS"}
    for f in figures:
        base = f" (baseline {f['baseline_metric']}: {f['baseline_value']})" if "baseline_value" in f else ""
        print(f"{f['metric']}: {f['value']} {f['unit']}{base}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if done == args.jobs and done_api == args.jobs else 1


if __name__ == "__main__":
    raise SystemExit(main())
