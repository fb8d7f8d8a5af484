"""Benchmark: job submission through the local API (same handler as Lambda) vs the same AWS calls issued bare.

The bare baseline makes exactly the calls the API's create makes (DynamoDB PutItem of the job record with
its "not exists" condition, SQS SendMessage of the job message, GetQueueAttributes for the queue depth its
answer shows), with items and messages of the same size; the run checks this by recording the operations the
API's own clients issue for one create and refuses to report a ratio if they differ. The API is measured
twice: through its Lambda entry point (``handle_event`` with API Gateway's payload 2.0 event: the code that
runs on AWS, where the HTTP side is API Gateway's) and through the local HTTP server (Python HTTP server and
client on top). All phases run in this process against one moto server (its own process) on loopback, with
the same concurrency, so a ratio shows what the API adds per job (auth, validation, building the record,
HTTP) over its AWS calls. A third phase ("progress on", issue 38) runs the Lambda entry of an app built with the
job event log (GET /v1/jobs/{id}/events, progress in job views): its create must cost what the other's does.
Every phase starts from an empty queue (a new one): moto's SQS calls slow down as the queue grows, which
favoured whichever phase ran first. Figures are printed and written as JSON (``--out``); nothing is asserted.
Bounded: each phase stops after ``--seconds`` (default 8), well under a minute.

    .venv/bin/python -m bench.bench_api --seconds 8 --concurrency 8 --out bench/results/api.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

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


def _print(result: dict[str, Any], same_calls: bool, concurrency: int, seconds: float) -> None:
    print(f"API create made {result['api_create_calls']}; the baseline makes {result['baseline_calls']}"
          f"{'' if same_calls else ' - DIFFERENT: no ratio reported'}")
    for label, key in ((f"bare {result['baseline_calls']}", "bare_aws_calls"), ("API Lambda entry", "api_lambda_entry"),
                       ("API POST /v1/jobs (local HTTP)", "api_local_http")):
        r = result[key]
        print(f"{label}: {r['throughput_rps']} req/s  p50 {r['p50_ms']} ms  p99 {r['p99_ms']} ms"
              f"  ({r['requests']} ok, {r['errors']} errors)")
    print(f"calls per request: {result['calls_per_request']}")
    print(f"throughput vs bare: Lambda entry {result['api_lambda_entry_vs_bare_throughput_ratio']} (progress on: "
          f"{result['api_lambda_entry_progress_on_vs_bare_throughput_ratio']}), local HTTP "
          f"{result['api_local_http_vs_bare_throughput_ratio']} (concurrency {concurrency}, {seconds:g}s per phase)")


def _alternate(order: tuple[Any, ...], seconds: float, concurrency: int, own_calls: dict[Any, list[str]],
               api_calls: list[str], reset: Callable[[], None]) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """Run the phases in ``order``, each from an empty queue (``reset``); each phase's figures and the AWS
    operations it issued."""
    halves, calls = [], []
    for worker in order:
        reset()
        recorder = own_calls.get(worker, api_calls)
        recorder.clear()
        halves.append(_run_phase(worker, seconds, concurrency))
        calls.append(list(recorder))
    return halves, calls


def _fresh_queue(sqs: Any, target: dict[str, str], producer: Any) -> None:
    """Point the baseline and the API's producer at a new, empty queue (moto allows one PurgeQueue a minute)."""
    target["url"] = sqs.create_queue(QueueName=f"bench-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    producer.queue_url = target["url"]


def _ratio(phase: dict[str, Any], bare: dict[str, Any], same_calls: bool) -> float | None:
    return round(phase["throughput_rps"] / bare["throughput_rps"], 3) if bare["throughput_rps"] and same_calls else None


def _gateway_event(body: str, key: str) -> dict[str, Any]:
    """What API Gateway (HTTP API, payload 2.0) hands the Lambda for ``POST /v1/jobs``."""
    return {"version": "2.0", "routeKey": "$default", "rawPath": "/v1/jobs", "rawQueryString": "",
            "headers": {"authorization": f"Bearer {key}", "content-type": "application/json"},
            "requestContext": {"http": {"method": "POST", "path": "/v1/jobs", "protocol": "HTTP/1.1",
                                        "sourceIp": "127.0.0.1"},
                               "domainName": "api.example.test", "requestId": uuid.uuid4().hex, "stage": "$default"},
            "body": body, "isBase64Encoded": False}


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
    from fleetdev.local_server import LocalApiServer
    from runtime.api.auth import generate_key
    from runtime.api.handler import ApiConfig, build_app, handle_event
    from runtime.jobs.events import create_events_table
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
        queue = {"url": queue_url}  # each half gets a new one (_fresh_queue)
        key, _ = generate_key("bench")
        api_clients = {"dynamodb": client("dynamodb"), "sqs": client("sqs")}
        app = build_app(ApiConfig(job_table=table, queue_url=queue_url, api_keys=(key,), endpoint_url=endpoint,
                                  region="us-east-1"), clients=api_clients)
        events_table = f"bench-events-{uuid.uuid4().hex[:6]}"
        create_events_table(client("dynamodb"), events_table)
        app_on = build_app(ApiConfig(job_table=table, queue_url=queue_url, api_keys=(key,), endpoint_url=endpoint,
                                     region="us-east-1", event_table=events_table), clients=api_clients)
        app_on.producer = app.producer  # one producer: _fresh_queue points both apps at each phase's new queue
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
                attributes = {n: {"DataType": "String", "StringValue": str(spec[n])} for n in ("model", "task")}
                sent = q.send_message(QueueUrl=queue["url"], MessageBody=message.to_json(),
                                      MessageAttributes=attributes).get("MessageId")
                if time.monotonic() - depth_read[0] >= depth_cache_s:
                    depth_read[0] = time.monotonic()
                    q.get_queue_attributes(QueueUrl=queue["url"], AttributeNames=DEPTH_ATTRIBUTES)
                return bool(sent)
            return op

        with LocalApiServer(app) as server:
            def api_worker() -> Callable[[], bool]:
                http = httpx.Client(base_url=server.url, timeout=30,
                                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})

                def op() -> bool:
                    return http.post("/v1/jobs", content=body).status_code == 202
                return op

            def lambda_worker(target: Any = app) -> Callable[[], bool]:
                """The Lambda entry point with API Gateway's payload 2.0 event: the code that runs on AWS."""
                def op() -> bool:
                    return handle_event(_gateway_event(body, key), target)["statusCode"] == 202
                return op

            lambda_progress_worker = functools.partial(lambda_worker, app_on)  # the event log configured

            api_worker()()  # warm up every path once; the API's create is recorded to check the baseline
            calls_of_create = list(api_calls)
            lambda_worker()()
            lambda_progress_worker()()
            bare_worker()()
            api_calls.clear()
            # Every half starts from an empty queue (a new one): moto's SQS calls slow down as the queue
            # grows (about 10 ms per call after 800 messages here) and throughput is convex in that latency,
            # so with one growing queue even alternating halves favoured the first and last phase (bare; most
            # of the earlier "0.71"). The order still alternates (bare, Lambda, HTTP, HTTP, Lambda, bare).
            order = (bare_worker, lambda_worker, lambda_progress_worker, api_worker, api_worker,
                     lambda_progress_worker, lambda_worker, bare_worker)
            halves, calls = _alternate(order, seconds / 2, args.concurrency, {bare_worker: bare_calls}, api_calls,
                                       lambda: _fresh_queue(sqs, queue, app.producer))
            bare, lam, lam_on, api = (_merge(halves[i], halves[7 - i]) for i in range(4))
            api_calls[:] = calls[3] + calls[4]
            bare_calls[:] = calls[0] + calls[7]

    same_calls = calls_of_create == BARE_CALLS

    ratio = _ratio(api, bare, same_calls)
    result = {"benchmark": "api-create-vs-the-same-aws-calls-bare", "concurrency": args.concurrency,
              "phase_seconds": seconds, "python": platform.python_version(), "cpus": os.cpu_count(),
              "bare_aws_calls": bare, "api_lambda_entry": lam, "api_local_http": api,
              "baseline_calls": "+".join(BARE_CALLS), "api_create_calls": "+".join(calls_of_create),
              "api_lambda_entry_vs_bare_throughput_ratio": _ratio(lam, bare, same_calls),
              "api_lambda_entry_progress_on": lam_on,
              "api_lambda_entry_progress_on_vs_bare_throughput_ratio": _ratio(lam_on, bare, same_calls),
              "api_local_http_vs_bare_throughput_ratio": ratio,
              "calls_per_request": {"api_local_http": _per_request(api_calls, api["requests"]),
                                    "bare": _per_request(bare_calls, bare["requests"])},
              "note": "local loopback, moto server in its own process; not a prediction of AWS latency"}
    _print(result, same_calls, args.concurrency, seconds)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
