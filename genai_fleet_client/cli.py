"""``genai-fleet``: run a job from a shell and get its files, with a progress bar.

    genai-fleet run --model sdxl-base-1.0 --prompt "a lighthouse at dawn" --steps 30 -o out/
    genai-fleet list [--status queued,running] [--limit 20]
    genai-fleet cancel j_...

The key and the API URL come from ``--api-key`` / ``--api-url`` or ``$GENAI_FLEET_API_KEY`` /
``$GENAI_FLEET_API_URL`` (prefer the variables: flags show in the process list); neither is ever printed.
``rate-limited`` 429s and 503s are retried after their ``Retry-After`` for at most ``--max-retry-wait``
seconds in all; a ``quota-exceeded`` 429 is reported at once. Ctrl-C while waiting leaves the job
running unless ``--cancel-on-interrupt`` is given; either way the command says what it did.

Exit codes: 0 done; 2 usage (bad flags, no API URL); 3 refused (the API said no: key, validation,
quota, rate limit past the cap, unknown job); 4 the job failed; 5 the job was canceled (also by
``--cancel-on-interrupt``); 6 network (API unreachable or unavailable past the cap, an output not
downloadable); 130 interrupted, job left running.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import IO, Any

from genai_fleet_client._protocol import ENV_API_KEY, ENV_API_URL, succeeded
from genai_fleet_client.client import Client
from genai_fleet_client.errors import (
    ApiError,
    DownloadError,
    GenaiFleetError,
    JobCanceledError,
    JobFailedError,
    NetworkError,
    UnavailableError,
    WaitTimeoutError,
)
from genai_fleet_client.progress import JobProgress, describe_event
from genai_fleet_client.types import Job

EXIT_OK, EXIT_USAGE, EXIT_REFUSED, EXIT_FAILED, EXIT_CANCELED, EXIT_NETWORK = 0, 2, 3, 4, 5, 6
EXIT_INTERRUPTED = 130
DEFAULT_MAX_RETRY_WAIT_S = 60.0
DEFAULT_NETWORK_RETRY_S = 60.0


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="genai-fleet", description="Run image and video jobs on a genai-fleet API.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--api-url", help=f"the API's base URL (default: ${ENV_API_URL})")
    common.add_argument("--api-key", help=f"API key (default: ${ENV_API_KEY}; prefer the variable)")
    common.add_argument("--max-retry-wait", type=float, default=DEFAULT_MAX_RETRY_WAIT_S, metavar="S",
                        help="most seconds to spend waiting out rate-limited 429s and 503s (default 60)")
    common.add_argument("--network-retry", type=float, default=DEFAULT_NETWORK_RETRY_S, metavar="S",
                        help="most seconds to keep reconnecting after a dropped connection (default 60)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", parents=[common], help="submit a job, show its progress, write its outputs")
    run.add_argument("--model", required=True)
    run.add_argument("--task", default="txt2img", help="txt2img (default), img2img, txt2video, comfyui-workflow")
    run.add_argument("--prompt")
    run.add_argument("--negative-prompt")
    run.add_argument("--width", type=int)
    run.add_argument("--height", type=int)
    run.add_argument("--steps", type=int)
    run.add_argument("--guidance", type=float)
    run.add_argument("--seed", type=int)
    run.add_argument("--num-outputs", type=int)
    run.add_argument("--input", action="append", default=[], metavar="NAME=JSON",
                     help="any other input, its value as JSON (or a bare string): --input frames=16")
    run.add_argument("-o", "--output-dir", default=".", help="where to write the outputs (default: .)")
    run.add_argument("--idempotency-key", help="resend with the same key to get the same job, not a second one")
    run.add_argument("--timeout", type=float, default=3600.0, metavar="S", help="most seconds to wait (default 3600)")
    run.add_argument("--cancel-on-interrupt", action="store_true", help="cancel the job on Ctrl-C")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    lst = sub.add_parser("list", parents=[common], help="your jobs, newest first")
    lst.add_argument("--status", help="one status or several, comma-separated")
    lst.add_argument("--limit", type=int, default=20)
    cancel = sub.add_parser("cancel", parents=[common], help="cancel a job")
    cancel.add_argument("job_id")
    events = sub.add_parser("events", parents=[common], help="follow a job's events until it ends, one line each")
    events.add_argument("job_id")
    events.add_argument("--after", metavar="CURSOR", help="resume after this cursor (the first column of a line)")
    return parser


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for name in ("prompt", "negative_prompt", "width", "height", "steps", "guidance", "seed", "num_outputs"):
        if getattr(args, name) is not None:
            inputs[name] = getattr(args, name)
    for item in args.input:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--input {item!r}: write NAME=VALUE")
        try:
            inputs[name] = json.loads(text)
        except ValueError:
            inputs[name] = text
    return inputs


class _Scrub:
    """Keeps the key and the API URL out of everything the command prints."""

    def __init__(self, *secrets: str | None):
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "<api-url>" if secret.startswith("http") else "<api-key>")
        return text


def main(argv: Sequence[str] | None = None, stdout: IO[str] | None = None, stderr: IO[str] | None = None) -> int:
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    scrub = _Scrub(args.api_key, args.api_url)
    try:
        client = Client(args.api_key, args.api_url, max_retry_wait_s=args.max_retry_wait,
                        network_retry_s=args.network_retry,
                        on_retry=lambda why, s: print(scrub(f"genai-fleet: {why}; retrying in {s:g} s"), file=err))
    except ValueError as exc:
        print(f"genai-fleet: {exc}", file=err)
        return EXIT_USAGE
    scrub = _Scrub(args.api_key, args.api_url, client.settings.api_key, client.settings.base_url)
    try:
        with client:
            if args.command == "list":
                return _list(client, args, out)
            if args.command == "events":
                for event in client.follow(args.job_id, after=args.after):
                    print(describe_event(event), file=out, flush=True)
                return EXIT_OK
            if args.command == "cancel":
                job = client.cancel(args.job_id)
                print(f"{job.id}: {job.status}{' (cancel requested)' if job.cancel_requested and not job.done else ''}",
                      file=out)
                return EXIT_OK
            return _run(client, args, out, err)
    except UsageError as exc:
        print(scrub(f"genai-fleet: {exc}"), file=err)
        return EXIT_USAGE
    except GenaiFleetError as exc:
        print(scrub(f"genai-fleet: {exc}"), file=err)
        return exit_code(exc)


def exit_code(exc: GenaiFleetError) -> int:
    if isinstance(exc, JobFailedError | WaitTimeoutError):
        return EXIT_FAILED
    if isinstance(exc, JobCanceledError):
        return EXIT_CANCELED
    if isinstance(exc, NetworkError | UnavailableError | DownloadError):
        return EXIT_NETWORK
    if isinstance(exc, ApiError):
        return EXIT_REFUSED
    return EXIT_FAILED


def _list(client: Client, args: argparse.Namespace, out: IO[str]) -> int:
    page = client.list(status=args.status, limit=args.limit)
    for job in page.jobs:
        print(f"{job.id}  {job.status:<9}  {job.created_at}  {job.model}  {job.task}", file=out)
    if page.next_cursor:
        print(f"(more: {len(page.jobs)} shown)", file=out)
    return EXIT_OK


def _run(client: Client, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    inputs = _inputs(args)
    try:
        job = client.submit(args.model, inputs, args.task, idempotency_key=args.idempotency_key)
    except KeyboardInterrupt:
        print("genai-fleet: interrupted before the API accepted the job; resend with the same "
              "--idempotency-key to find out", file=err)
        return EXIT_INTERRUPTED
    progress = JobProgress(err, disable=args.no_progress)
    try:
        job = client.wait(job, timeout_s=args.timeout, on_update=progress.update)
    except KeyboardInterrupt:
        progress.close()
        return _interrupted(client, job, args, out, err)
    finally:
        progress.close()
    return _finish(client, job, args, out)


def _finish(client: Client, job: Job, args: argparse.Namespace, out: IO[str]) -> int:
    """Write the outputs of a succeeded job (their paths on stdout); a failed or canceled one is raised."""
    succeeded(job)
    for path in client.download(job, args.output_dir):
        print(path, file=out)
    return EXIT_OK


def _interrupted(client: Client, job: Job, args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    if not args.cancel_on_interrupt:
        print(f"genai-fleet: interrupted; job {job.id} keeps running (not canceled: pass --cancel-on-interrupt "
              f"to cancel on Ctrl-C, or run: genai-fleet cancel {job.id})", file=err)
        return EXIT_INTERRUPTED
    canceled = client.cancel(job.id)
    if canceled.done and canceled.status != "canceled":  # it ended before the cancel reached it
        print(f"genai-fleet: interrupted; job {job.id} had already {canceled.status}", file=err)
        return _finish(client, canceled, args, out)
    state = "canceled" if canceled.status == "canceled" else "cancel requested; the worker stops it between phases"
    print(f"genai-fleet: interrupted; job {job.id} {state} (--cancel-on-interrupt)", file=err)
    return EXIT_CANCELED
