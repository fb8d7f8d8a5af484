"""Benchmark: job submission through the local API (same handler as Lambda) vs bare SQS SendMessage.

Both phases run in this process against one moto server on loopback, with the same concurrency, so the
ratio shows what the API adds per job (auth, validation, DynamoDB write, queue write, HTTP) over the
queue write alone. Figures are printed and written as JSON (``--out``); nothing is asserted. Bounded:
each phase stops after ``--seconds`` (default 8), the whole run stays well under a minute.

    .venv/bin/python -m bench.bench_api --seconds 8 --concurrency 8 --out bench/results/api.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _run_phase(make_worker: Callable[[], Callable[[], bool]], seconds: float, concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        op = make_worker()
        mine, bad = [], 0
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            ok = op()
            elapsed = (time.perf_counter() - t0) * 1000
            if ok:
                mine.append(elapsed)
            else:
                bad += 1
        with lock:
            latencies.extend(mine)
            errors[0] += bad

    started = time.monotonic()
    threads = [threading.Thread(target=loop, daemon=True) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 30)
    wall = time.monotonic() - started
    n = len(latencies)
    return {"requests": n, "errors": errors[0], "seconds": round(wall, 2),
            "throughput_rps": round(n / wall, 1) if wall else 0.0,
            "p50_ms": round(_percentile(latencies, 50), 2) if n else None,
            "p99_ms": round(_percentile(latencies, 99), 2) if n else None,
            "mean_ms": round(statistics.fmean(latencies), 2) if n else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0, help="duration of each phase (max 20)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    seconds = min(max(args.seconds, 1.0), 20.0)

    os.environ.update({"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
                       "AWS_DEFAULT_REGION": "us-east-1"})
    import logging

    import boto3
    import httpx
    from moto.server import ThreadedMotoServer

    from fleetdev.local_server import LocalApiServer
    from runtime.api.auth import generate_key
    from runtime.api.handler import ApiConfig, build_app
    from runtime.jobs.store import create_table

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    port = _free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")

        table, sqs = f"bench-{uuid.uuid4().hex[:6]}", client("sqs")
        create_table(client("dynamodb"), table)
        queue_url = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:6]}")["QueueUrl"]
        key, _ = generate_key("bench")
        app = build_app(ApiConfig(job_table=table, queue_url=queue_url, api_keys=(key,), endpoint_url=endpoint,
                                  region="us-east-1"))
        body = json.dumps(JOB)

        def bare_worker() -> Callable[[], bool]:
            c = client("sqs")
            msg = json.dumps({"v": 1, "job_id": "j_bench", "enqueued_at": time.time(), "job": JOB})

            def op() -> bool:
                return bool(c.send_message(QueueUrl=queue_url, MessageBody=msg).get("MessageId"))
            return op

        with LocalApiServer(app) as server:
            def api_worker() -> Callable[[], bool]:
                http = httpx.Client(base_url=server.url, timeout=30,
                                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})

                def op() -> bool:
                    return http.post("/v1/jobs", content=body).status_code == 202
                return op

            api_worker()()  # warm up both paths once
            bare_worker()()
            bare = _run_phase(bare_worker, seconds, args.concurrency)
            api = _run_phase(api_worker, seconds, args.concurrency)
    finally:
        moto.stop()

    ratio = round(bare["throughput_rps"] / api["throughput_rps"], 2) if api["throughput_rps"] else None
    result = {"benchmark": "api-submit-vs-bare-sqs", "concurrency": args.concurrency, "phase_seconds": seconds,
              "python": platform.python_version(), "cpus": os.cpu_count(), "bare_sqs": bare, "api": api,
              "overhead_ratio_throughput": ratio,
              "overhead_ratio_p50": round(api["p50_ms"] / bare["p50_ms"], 2) if api["p50_ms"] and bare["p50_ms"]
              else None,
              "note": "local loopback, moto server in-process; not a prediction of AWS latency"}
    print(f"bare SQS SendMessage: {bare['throughput_rps']:>8} req/s  p50 {bare['p50_ms']} ms  p99 {bare['p99_ms']} ms"
          f"  ({bare['requests']} ok, {bare['errors']} errors)")
    print(f"API POST /v1/jobs:    {api['throughput_rps']:>8} req/s  p50 {api['p50_ms']} ms  p99 {api['p99_ms']} ms"
          f"  ({api['requests']} ok, {api['errors']} errors)")
    print(f"overhead: bare/API throughput = {ratio}x, API/bare p50 = {result['overhead_ratio_p50']}x "
          f"(concurrency {args.concurrency}, {seconds:g}s per phase)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
