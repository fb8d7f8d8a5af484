"""The long fuzzing campaign of the job API (``make fuzz``): schemathesis, from the published OpenAPI document,
positive and negative data, per operation and stateful (create -> get / cancel through the document's links).

It runs the local HTTP server with the real handler, JobStore and SQS producer against a moto server in its
own process, for rounds (a new seed each) until at least ``--requests`` requests were answered or
``--minutes`` ran out. Every response goes through schemathesis' checks; failures are recorded, not raised,
so one finding does not end the campaign. The report (JSON and markdown, ``--out``, default
``bench/results/fuzz-latest.*``) counts requests by operation, generation mode and status, every 5xx with
its request, and each check's failures with a few examples. Exit status 1 when any request got a 5xx.

Settings for coverage, not for the limits' own tests: the read limit is off (one key sending hundreds of
reads a second would otherwise get 429 before reaching the code under test; tests/integration/
test_api_abuse.py holds the limits) and sync waits are off. The in-suite run (tests/integration/
test_api_schemathesis.py) stays small; this one is for a quiet machine (about 10 minutes on 2 shared cores).

    .venv/bin/python -m bench.fuzz_api --requests 10000 --minutes 14
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import platform
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MAX_EXAMPLES_SHOWN = 5


class Tally:
    """What the campaign saw, filled in from the hypothesis runs (thread-safe: the server is threaded)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests = 0
        self.by_operation: collections.Counter[str] = collections.Counter()
        self.by_status: collections.Counter[int] = collections.Counter()
        self.by_mode: collections.Counter[str] = collections.Counter()
        self.server_errors: list[dict[str, Any]] = []
        self.check_failures: collections.Counter[str] = collections.Counter()
        self.check_examples: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        self.notes: list[str] = []  # generation that could not run (not a finding about the API)

    def record(self, case: Any, response: Any, mode: str, checks: list[Any]) -> None:
        label, status = case.operation.label, response.status_code
        failed: list[tuple[str, str]] = []
        try:
            case.validate_response(response, checks=checks)
        except BaseExceptionGroup as exc:  # schemathesis' FailureGroup of check failures: recorded, carried on
            failed += [(getattr(f, "title", "") or type(f).__name__, str(getattr(f, "message", f))[:300])
                       for f in exc.exceptions]
        except Exception as exc:  # noqa: BLE001 - a single check failure
            failed.append((getattr(exc, "title", "") or type(exc).__name__, str(getattr(exc, "message", exc))[:300]))
        with self.lock:
            self.requests += 1
            self.by_operation[label] += 1
            self.by_status[status] += 1
            self.by_mode[mode] += 1
            sample = {"operation": label, "mode": mode, "status": status, "curl": _curl(case)}
            if status >= 500 and len(self.server_errors) < 50:
                self.server_errors.append({**sample, "body": response.text[:500]})
            for title, message in failed:
                self.check_failures[title] += 1
                if len(self.check_examples[title]) < MAX_EXAMPLES_SHOWN:
                    self.check_examples[title].append({**sample, "message": message})

    def as_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "server_errors_5xx": sum(n for s, n in self.by_status.items() if s >= 500),
                "by_operation": dict(self.by_operation.most_common()),
                "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
                "by_mode": dict(self.by_mode), "server_error_examples": self.server_errors,
                "check_failures": dict(self.check_failures.most_common()),
                "check_failure_examples": dict(self.check_examples), "notes": sorted(set(self.notes))}


def _curl(case: Any) -> str:
    try:
        return case.as_curl_command()[:600]
    except Exception:  # noqa: BLE001 - the sample is a convenience
        return f"{case.method} {case.formatted_path}"


def _fresh_idempotency_key(case: Any) -> None:
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and key:
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"


def _checks(negative: bool) -> list[Any]:
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_headers_conformance,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
              response_headers_conformance]
    return [*checks, negative_data_rejection] if negative else checks


def per_operation(schema: Any, tally: Tally, examples: int, seed: int, stop_at: float) -> None:
    from schemathesis import GenerationMode

    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            note = f"{operation.label} {mode.value}"
            if time.monotonic() > stop_at:
                return
            if any(n.startswith(note + ":") for n in tally.notes):
                continue  # found impossible in an earlier round: do not spend the generation time again
            try:
                _exercise(operation, mode, tally, examples, seed, stop_at)
            except Exception as exc:  # noqa: BLE001 - e.g. nothing to negate in an operation without parameters
                tally.notes.append(f"{note}: {type(exc).__name__}: {str(exc)[:160]}")


def _exercise(operation: Any, mode: Any, tally: Tally, examples: int, seed: int, stop_at: float) -> None:
    import hypothesis
    from hypothesis import HealthCheck
    from schemathesis import GenerationMode

    checks = _checks(mode is GenerationMode.NEGATIVE)

    @hypothesis.given(case=operation.as_strategy(generation_mode=mode))
    @hypothesis.settings(max_examples=examples, deadline=None, database=None, derandomize=False,
                         suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate])
    @hypothesis.seed(seed)
    def exercise(case: Any) -> None:
        if time.monotonic() > stop_at:
            return
        _fresh_idempotency_key(case)
        tally.record(case, case.call(), _mode(case, str(mode.value)), checks)

    exercise()


def _mode(case: Any, default: str) -> str:
    """The generation mode schemathesis used for ``case`` (a stateful run mixes them)."""
    mode = getattr(getattr(getattr(case, "meta", None), "generation", None), "mode", None)
    return str(getattr(mode, "value", mode)) if mode is not None else default


def stateful(schema: Any, tally: Tally, examples: int, steps: int, seed: int, stop_at: float) -> None:
    import hypothesis
    from hypothesis import HealthCheck

    checks = _checks(negative=False)  # a stateful step mixes modes; the per-operation pass holds the rejection check

    class Machine(schema.as_state_machine()):  # type: ignore[misc]
        def before_call(self, case: Any) -> None:
            _fresh_idempotency_key(case)

        def call(self, case: Any, **kwargs: Any) -> Any:
            if time.monotonic() > stop_at:
                raise _OutOfTimeError
            return super().call(case, **kwargs)

        def validate_response(self, response: Any, case: Any, additional_checks: Any = None, **kwargs: Any) -> None:
            tally.record(case, response, "stateful-" + _mode(case, "mixed"), checks)

    try:
        Machine.run(settings=hypothesis.settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None, derandomize=False,
            suppress_health_check=list(HealthCheck), phases=[hypothesis.Phase.generate]), )
    except _OutOfTimeError:
        pass


class _OutOfTimeError(Exception):
    pass


def campaign(requests: int, minutes: float, examples: int, seed: int) -> dict[str, Any]:
    import boto3
    import schemathesis
    from botocore.config import Config

    from bench._moto import moto_server
    from fleetdev.local_server import LocalApiServer
    from runtime.api.auth import generate_key
    from runtime.api.handler import ApiConfig, build_app
    from runtime.api.openapi import document
    from runtime.jobs.store import create_table
    from runtime.queues.base import SQS_MAX_MESSAGE_BYTES

    os.environ.update({"AWS_ACCESS_KEY_ID": "fuzz", "AWS_SECRET_ACCESS_KEY": "fuzz",  # moto accepts any credentials
                       "AWS_DEFAULT_REGION": "us-east-1"})
    key, _ = generate_key("fuzz")
    tally = Tally()
    started, stop_at = time.monotonic(), time.monotonic() + minutes * 60
    rounds = 0
    with moto_server() as endpoint:
        def patient(service: str) -> Any:
            return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1", config=Config(
                read_timeout=60, connect_timeout=10, retries={"max_attempts": 2, "mode": "standard"}))

        ddb = boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        while tally.requests < requests and time.monotonic() < stop_at:
            # A fresh table and queue each round: moto deep-copies the whole table on every TransactWriteItems,
            # so a table of thousands of jobs made moto itself time out (the API then rightly answered 503).
            table = f"fuzz-jobs-{rounds}"
            create_table(ddb, table)
            queue = sqs.create_queue(QueueName=table, Attributes={
                "MaximumMessageSize": str(SQS_MAX_MESSAGE_BYTES)})["QueueUrl"]
            # Generous client timeouts: on a loaded machine moto can stall for seconds (its table copies), and a
            # 503 for that would be the API rightly reporting the stand-in, not a finding about the API.
            app = build_app(ApiConfig(job_table=table, queue_url=queue, api_keys=(key,), endpoint_url=endpoint,
                                      region="us-east-1", max_wait_seconds=0.0, hot_models=("sdxl-base-1.0",)),
                            clients={"dynamodb": patient("dynamodb"), "sqs": patient("sqs")})
            app.options.read_rate_per_second = None  # coverage: see the module docstring
            with LocalApiServer(app) as server:
                schema = schemathesis.openapi.from_dict(document())
                schema.config.update(base_url=server.url, headers={"Authorization": f"Bearer {key}"},
                                     request_timeout=30)
                schema.config.generation.update(modes=["positive", "negative"], max_examples=examples)
                round_seed = seed + rounds
                per_operation(schema, tally, examples, round_seed, stop_at)
                stateful(schema, tally, max(10, examples // 4), 8, round_seed, stop_at)
            rounds += 1
            print(f"round {rounds}: {tally.requests} requests, {tally.as_dict()['server_errors_5xx']} 5xx, "
                  f"{time.monotonic() - started:.0f} s", flush=True)
    return {"rounds": rounds, "seconds": round(time.monotonic() - started, 1), **tally.as_dict()}


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"# Job API fuzzing campaign ({report['when']})", "",
             f"`{report['command']}` on {report['machine']}", "",
             f"- requests: **{report['requests']}** in {report['seconds']} s ({report['rounds']} rounds, "
             f"seed {report['seed']}); modes: {report['by_mode']}",
             f"- 5xx answers: **{report['server_errors_5xx']}**",
             f"- statuses: {report['by_status']}",
             f"- by operation: {report['by_operation']}",
             f"- check failures: {report['check_failures'] or 'none'}", ""]
    for title, examples in report["check_failure_examples"].items():
        lines.append(f"## {title}")
        lines += [f"- {e['operation']} ({e['mode']}) -> {e['status']}: {e['message'][:200]}" for e in examples]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=10_000, help="stop after this many requests (default 10000)")
    parser.add_argument("--minutes", type=float, default=14.0, help="wall-clock cap (default 14)")
    parser.add_argument("--examples", type=int, default=150, help="examples per operation and mode per round")
    parser.add_argument("--seed", type=int, default=29)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "fuzz-latest"),
                        help="report path without extension (.json and .md are written)")
    args = parser.parse_args(argv)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    report = campaign(args.requests, args.minutes, args.examples, args.seed)
    import hypothesis
    import schemathesis

    report = {"when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "seed": args.seed,
              "command": f"python -m bench.fuzz_api --requests {args.requests} --minutes {args.minutes:g} "
                         f"--examples {args.examples} --seed {args.seed}",
              "machine": f"{platform.platform()}, {os.cpu_count()} CPUs, load average {load} at start",
              "versions": {"schemathesis": schemathesis.__version__, "hypothesis": hypothesis.__version__},
              "target_requests": args.requests, **report}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(_markdown(report) + "\n")
    print(_markdown(report))
    if report["requests"] < args.requests:
        print(f"fuzz: only {report['requests']} of {args.requests} requests before the time cap")
    return 1 if report["server_errors_5xx"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
