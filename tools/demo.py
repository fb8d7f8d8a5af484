"""``make demo``: start local mode, run a sync job, a txt2video job and a batch of async jobs, check every output,
stop.

While the batch runs it prints a live progress line for its longest job (the video), from the job's events
(GET /v1/jobs/{id}/events, issue 38).

Prints a table of the jobs (status, attempts, per-phase timings, output URL), fetches every output from
the CDN stand-in and checks it: a PNG of the requested size, or, for the video, an MP4 whose decoded frame
count, fps and size are the request's (fetched in two HTTP Range requests, as a player seeks) plus its
poster. Prints the audit line (submitted / succeeded / failed / duplicated), and exits non-zero when anything
failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from fleetdev.local.platform import LocalOptions, LocalPlatform
from genai_fleet_client import Client, GenaiFleetError
from genai_fleet_client.progress import describe_event

ROOT = Path(__file__).resolve().parent.parent

SIZES = [(512, 512), (768, 512), (512, 768), (640, 384), (384, 640), (256, 256), (1024, 576), (576, 1024)]
# The diffusers backend on the CPU (tiny random-weight pipelines): small sizes and few steps, a second a job.
DIFFUSERS_SIZES = [(64, 64), (96, 64), (64, 96), (128, 128), (128, 64), (64, 128), (96, 96), (80, 64)]
DIFFUSERS_STEPS = 8


def _ts(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() if value else None


def _ms(value: Any) -> str:
    return f"{value:.0f}" if isinstance(value, int | float) else "-"


def check_output(http: httpx.Client, url: str, size: tuple[int, int]) -> str | None:
    """None when ``url`` serves a PNG of ``size``; else what is wrong."""
    try:
        response = http.get(url)
    except httpx.HTTPError as exc:
        return f"fetch failed: {exc}"
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    try:
        image = Image.open(io.BytesIO(response.content))
        image.verify()
    except (OSError, SyntaxError) as exc:
        return f"not an image: {exc}"
    if image.format != "PNG":
        return f"format {image.format}, want PNG"
    if image.size != size:
        return f"size {image.size[0]}x{image.size[1]}, want {size[0]}x{size[1]}"
    return None


VIDEO = {"frames": 24, "fps": 12, "width": 512, "height": 512}  # the demo's txt2video: 2 s of a sweeping bar


def check_video(http: httpx.Client, outputs: list[dict[str, Any]]) -> str | None:
    """None when ``outputs`` are an MP4 of ``VIDEO``'s frames, fps and size (fetched by Range) and a PNG poster."""
    import av

    if len(outputs) != 2 or outputs[0].get("content_type") != "video/mp4":
        return f"outputs {[o.get('content_type') for o in outputs]}, want video/mp4 and a poster"
    try:
        head = http.get(outputs[0]["url"], headers={"Range": "bytes=0-1023"})
        rest = http.get(outputs[0]["url"], headers={"Range": "bytes=1024-"})
    except httpx.HTTPError as exc:
        return f"fetch failed: {exc}"
    if head.status_code != 206 or rest.status_code not in (206, 416):
        return f"Range answers HTTP {head.status_code} / {rest.status_code}, want 206"
    data = head.content + (rest.content if rest.status_code == 206 else b"")
    try:
        with av.open(io.BytesIO(data)) as container:
            stream = container.streams.video[0]
            frames = sum(1 for _ in container.decode(stream))
            got = (frames, int(stream.average_rate), stream.codec_context.width, stream.codec_context.height)
    except (av.FFmpegError, IndexError, ValueError) as exc:
        return f"not a playable MP4: {exc}"
    want = (VIDEO["frames"], VIDEO["fps"], VIDEO["width"], VIDEO["height"])
    if got != want:
        return f"frames/fps/size {got}, want {want}"
    return check_output(http, outputs[1]["url"], (VIDEO["width"], VIDEO["height"]))


def shown_url(url: str) -> str:
    """An output URL for the table: a signed one (issue 43) without its query of several hundred characters."""
    base, _, query = url.partition("?")
    return f"{base} (signed)" if "Signature=" in query else url


def table(rows: list[dict[str, Any]]) -> str:
    head = ["job", "mode", "size", "status", "att", "queue ms", "infer ms", "upload ms", "worker ms", "e2e ms",
            "image", "output URL"]
    body = [[r["id"], r["mode"], r["size"], r["status"], r["attempts"], r["queue"], r["infer"], r["upload"],
             r["total"], r["e2e"], r["check"], shown_url(r["url"])] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=False)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*map(str, b))
                                                                                    for b in body])


def follow_progress(platform: LocalPlatform, job_id: str, out: Any) -> threading.Thread:
    """Follow one job's events (GET /v1/jobs/{id}/events, the client's ``follow``) on a thread, drawing them as one
    line that is rewritten in place on a terminal (a line per event elsewhere) until the job's final status."""
    tty = out.isatty()

    def draw() -> None:
        line = ""
        try:
            with Client(platform.api_key, platform.api_url) as client:
                for event in client.follow(job_id, wait_s=5):
                    line = f"progress of {job_id} (video, longest): {describe_event(event)}"
                    print(("\r\033[K" + line) if tty else line, end="" if tty else "\n", file=out, flush=True)
        except GenaiFleetError as exc:
            print(f"\nprogress of {job_id}: {exc}", file=out, flush=True)
        if tty and line:
            print(file=out, flush=True)

    thread = threading.Thread(target=draw, name="demo-progress", daemon=True)
    thread.start()
    return thread


def run(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    diffusers = args.backend == "diffusers"
    options = LocalOptions(queue_kind="kafka" if args.kafka else "sqs", workers=args.workers, backend=args.backend,
                           test_pattern_delay_seconds=args.delay, keep_run_dir=args.keep_logs)
    failures: list[str] = []
    table_sizes = DIFFUSERS_SIZES if diffusers else SIZES
    try:
        platform = LocalPlatform(options)
    except ValueError as exc:  # bad input (an unknown backend ...), refused before anything starts
        print(f"demo: {exc}", file=sys.stderr)
        return 2
    with platform, httpx.Client(timeout=10) as http:
        started = time.monotonic() - t0
        backend = (f"diffusers on the CPU, tiny pipelines {', '.join(sorted(platform.models))}" if diffusers
                   else f"test-pattern {options.test_pattern_delay_seconds:g}s/image")
        print(f"local mode up in {started:.1f}s ({options.queue_kind}, {options.workers} workers, {backend})"
              + (f"; logs kept in {platform.run_dir}" if args.keep_logs else ""), flush=True)
        ledger = platform.ledger
        models = sorted(platform.models) or ["sdxl-base-1.0"]
        extra = {"steps": DIFFUSERS_STEPS} if diffusers else {}
        sizes: dict[str, tuple[int, int]] = {}
        modes: dict[str, str] = {}
        t_sync = time.monotonic()
        sync_size = table_sizes[0]
        sync = ledger.submit(prompt="a lighthouse at dusk, sync", width=sync_size[0], height=sync_size[1], seed=7,
                             wait=20, model=models[0], inputs=extra)
        sync_s = time.monotonic() - t_sync
        sizes[sync["id"]], modes[sync["id"]] = sync_size, "sync"
        print(f"sync job {sync['id']}: HTTP {ledger.submitted[sync['id']]['response']} status {sync['status']} "
              f"in {sync_s * 1000:.0f} ms (Prefer: wait=20)", flush=True)
        video = ledger.submit(prompt="a wave rolling onto a beach", task="txt2video", seed=9, **VIDEO)
        sizes[video["id"]], modes[video["id"]] = (VIDEO["width"], VIDEO["height"]), "video"
        t_batch = time.monotonic()
        for i in range(args.jobs):
            w, h = table_sizes[i % len(table_sizes)]
            view = ledger.submit(prompt=f"async job {i}", width=w, height=h, seed=100 + i,
                                 model=models[i % len(models)], inputs=extra)
            sizes[view["id"]], modes[view["id"]] = (w, h), "async"
        accept_s = time.monotonic() - t_batch
        print(f"{args.jobs} async jobs accepted in {accept_s * 1000:.0f} ms (202 each); polling ...", flush=True)
        live = follow_progress(platform, video["id"], sys.stdout)  # the longest job's events, as a live line
        views = ledger.wait_final(list(sizes), timeout=args.timeout)
        live.join(10)
        batch_s = time.monotonic() - t_batch
        rows = []
        for job_id, size in sizes.items():
            view = views.get(job_id) or {"status": "unknown", "outputs": [], "timings": {}}
            timings = view.get("timings") or {}
            created, completed = _ts(view.get("created_at")), _ts(view.get("completed_at"))
            url = view["outputs"][0]["url"] if view.get("outputs") else ""
            if modes[job_id] == "video":
                problem = check_video(http, view.get("outputs") or [])
            else:
                problem = check_output(http, url, size) if url else "no output"
            if view.get("status") != "succeeded":
                failures.append(f"{job_id}: status {view.get('status')} {view.get('error') or ''}")
            if problem:
                failures.append(f"{job_id}: output {problem}")
            rows.append({"id": job_id, "mode": modes[job_id], "size": f"{size[0]}x{size[1]}",
                         "status": view.get("status"), "attempts": view.get("attempts", "-"),
                         "queue": _ms(timings.get("queue_wait_ms")), "infer": _ms(timings.get("inference_ms")),
                         "upload": _ms(timings.get("upload_ms")), "total": _ms(timings.get("total_ms")),
                         "e2e": _ms((completed - created) * 1000 if created and completed else None),
                         "check": problem or ("ok MP4" if modes[job_id] == "video" else "ok PNG"), "url": url})
        print()
        print(table(rows))
        print()
        report = ledger.report(list(sizes))
        print(report.line("audit"))
        print(f"batch of {args.jobs}: all final {batch_s:.1f}s after the first submit; "
              f"{sum(1 for r in rows if r['check'] in ('ok PNG', 'ok MP4'))}/{len(rows)} outputs fetched from the CDN "
              f"stand-in and checked (PNG of the requested size; the video: MP4 frames, fps, size, poster)")
        if not report.clean or report.failed:
            failures += report.problems or [report.line()]
        ledger.close()
    print(f"demo finished in {time.monotonic() - t0:.1f}s, local mode stopped: "
          + ("OK" if not failures else f"{len(failures)} problem(s)"))
    for failure in failures:
        print(f"  FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=8, help="async jobs in the batch (default 8)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--delay", type=float, default=0.5, help="test-pattern seconds per image (default 0.5)")
    parser.add_argument("--kafka", action="store_true", help="use the Kafka mock cluster instead of SQS")
    parser.add_argument("--backend", default="test-pattern",
                        help="test-pattern (default) or diffusers: tiny random-weight pipelines on the CPU, the jobs "
                             "spread over the tiny models (model switches, RAM-tier hits)")
    parser.add_argument("--timeout", type=float, default=40.0, help="seconds to wait for the batch (default 40)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (logs, agent configs)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
