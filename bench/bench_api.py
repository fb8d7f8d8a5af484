"""Benchmark: job submission through the local API (same handler as Lambda) vs the same AWS calls issued bare.

The bare baseline makes exactly the calls the API's create makes (DynamoDB PutItem of the job record with
its "not exists" condition, SQS SendMessage of the job message, GetQueueAttributes for the queue depth its
answer shows), with items and messages of the same
size; the run checks this by recording the operations the API's own clients issue for one create and
refuses to report a ratio if they differ. Both phases run in this process against one moto server (its own process) on
loopback, with the same concurrency, so the ratio shows what the API adds per job (HTTP, auth,
validation, building the record) over its AWS calls. Figures are printed and written as JSON (``--out``);
nothing is asserted. Bounded: each phase stops after ``--seconds`` (default 8), well under a minute.

    .venv/bin/python -m bench.bench_api --seconds 8 --concurrency 8 --out bench/results/api.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# What the API's create makes for a job without an Idempotency-Key: the record, the message, and the queue depth
# its 202 answer shows (queue position / estimated wait; read at most once per depth_cache_seconds).
BARE_CALLS = ["PutItem", "SendMessage", "GetQueueAttributes"]
DEPTH_ATTRIBUTES = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
JOB = {"model": "sdxl-base-1.0", "inputs": {"prompt": "a lighthouse at dawn", "width": 512, "height": 512}}


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


def _per_request(calls: list[str], requests: int) -> dict[str, float]:
    return {name: round(calls.count(name) / requests, 3) for name in sorted(set(calls))} if requests else {}


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two halves of one phase: throughput over both; percentiles as the mean of the halves' (approximate)."""
    requests, seconds = a["requests"] + b["requests"], a["seconds"] + b["seconds"]
    out: dict[str, Any] = {"requests": requests, "errors": a["errors"] + b["errors"], "seconds": round(seconds, 2),
                           "throughput_rps": round(requests / seconds, 1) if seconds else 0.0}
    for key in ("p50_ms", "p99_ms", "mean_ms"):
        out[key] = round((a[key] + b[key]) / 2, 2) if a[key] is not None and b[key] is not None else None
    return out


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

    from bench._moto import moto_server
    from runtime.api.auth import generate_key
    from runtime.api.handler import ApiConfig, build_app
    from runtime.api.local_server import LocalApiServer
    from runtime.jobs.schema import validate_job
    from runtime.jobs.store import create_table, job_pk, new_record, serialize
    from runtime.queues.base import QueueMessage

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log
    with moto_server() as endpoint:
        def client(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1")

        table, sqs = f"bench-{uuid.uuid4().hex[:6]}", client("sqs")
        create_table(client("dynamodb"), table)
        queue_url = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:6]}")["QueueUrl"]
        key, _ = generate_key("bench")
        api_clients = {"dynamodb": client("dynamodb"), "sqs": client("sqs")}
        app = build_app(ApiConfig(job_table=table, queue_url=queue_url, api_keys=(key,), endpoint_url=endpoint,
                                  region="us-east-1"), clients=api_clients)
        body = json.dumps(JOB)
        spec = validate_job(dict(JOB))
        api_calls: list[str] = []
        for c in api_clients.values():
            c.meta.events.register("before-call", lambda model, **_: api_calls.append(model.name))

        bare_clients = (client("dynamodb"), client("sqs"))  # shared by all threads, as the API shares its own
        depth_cache_s = float(getattr(app.producer, "depth_cache_seconds", 0.0))
        depth_read = [0.0]  # the API's producer caches the queue depth this long; the baseline does the same
        bare_calls: list[str] = []
        for c in bare_clients:
            c.meta.events.register("before-call", lambda model, **_: bare_calls.append(model.name))

        def bare_worker() -> Callable[[], bool]:
            ddb, q = bare_clients

            def op() -> bool:
                record = new_record(spec, owner="bench")
                item = dict(record, pk=job_pk(record["job_id"]),
                            spec=json.dumps(record["spec"], separators=(",", ":"), sort_keys=True))
                ddb.put_item(TableName=table, Item=serialize(item), ConditionExpression="attribute_not_exists(pk)")
                message = QueueMessage(job_id=record["job_id"], job=spec, enqueued_at=record["created_at"])
                sent = q.send_message(QueueUrl=queue_url, MessageBody=message.to_json()).get("MessageId")
                if time.monotonic() - depth_read[0] >= depth_cache_s:
                    depth_read[0] = time.monotonic()
                    q.get_queue_attributes(QueueUrl=queue_url, AttributeNames=DEPTH_ATTRIBUTES)
                return bool(sent)
            return op

        with LocalApiServer(app) as server:
            def api_worker() -> Callable[[], bool]:
                http = httpx.Client(base_url=server.url, timeout=30,
                                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})

                def op() -> bool:
                    return http.post("/v1/jobs", content=body).status_code == 202
                return op

            api_worker()()  # warm up both paths once; the API's create is recorded to check the baseline
            calls_of_create = list(api_calls)
            bare_worker()()
            api_calls.clear()
            bare_calls.clear()
            # Alternating halves (bare, API, API, bare): the queue and the table grow during the run, and
            # GetQueueAttributes and moto get slower with them, so neither side gets the emptier half.
            halves = [_run_phase(w, seconds / 2, args.concurrency)
                      for w in (bare_worker, api_worker, api_worker, bare_worker)]
            bare, api = _merge(halves[0], halves[3]), _merge(halves[1], halves[2])

    same_calls = calls_of_create == BARE_CALLS
    ratio = round(api["throughput_rps"] / bare["throughput_rps"], 3) if bare["throughput_rps"] and same_calls else None
    result = {"benchmark": "api-create-vs-the-same-aws-calls-bare", "concurrency": args.concurrency,
              "phase_seconds": seconds, "python": platform.python_version(), "cpus": os.cpu_count(),
              "bare_aws_calls": bare, "api": api, "baseline_calls": "+".join(BARE_CALLS),
              "api_create_calls": "+".join(calls_of_create),
              "api_vs_bare_throughput_ratio": ratio,
              "calls_per_request": {"api": _per_request(api_calls, api["requests"]),
                                    "bare": _per_request(bare_calls, bare["requests"])},
              "api_vs_bare_p50_ratio": round(api["p50_ms"] / bare["p50_ms"], 2) if api["p50_ms"] and bare["p50_ms"]
              else None,
              "note": "local loopback, moto server in its own process; not a prediction of AWS latency"}
    print(f"API create made {calls_of_create}; the baseline makes {BARE_CALLS}"
          f"{'' if same_calls else ' - DIFFERENT: no ratio reported'}")
    print(f"bare {'+'.join(BARE_CALLS)}: {bare['throughput_rps']:>8} req/s  p50 {bare['p50_ms']} ms  "
          f"p99 {bare['p99_ms']} ms"
          f"  ({bare['requests']} ok, {bare['errors']} errors)")
    print(f"API POST /v1/jobs:    {api['throughput_rps']:>8} req/s  p50 {api['p50_ms']} ms  p99 {api['p99_ms']} ms"
          f"  ({api['requests']} ok, {api['errors']} errors)")
    print(f"calls per request: {result['calls_per_request']}")
    print(f"API/bare throughput = {ratio}, API/bare p50 = {result['api_vs_bare_p50_ratio']}x "
          f"(concurrency {args.concurrency}, {seconds:g}s per phase)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
