"""``python -m fleetdev.local``: run the whole platform on this machine until Ctrl-C (``make local``).

    python -m fleetdev.local [--kafka] [--workers N] [--backend diffusers | --comfyui-url URL | --a1111-url URL]
                            [--model ID=PATH ... --backend-model-dir DIR] [--api-port 8080] [--cdn-port 8090]
                            [--delay SECONDS] [--max-job-seconds N] [--keep-logs]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from fleetdev.local.models import LocalModelError
from fleetdev.local.platform import IN_PROCESS_BACKENDS, KAFKA_TOPIC, LocalOptions, LocalPlatform


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m fleetdev.local", description=__doc__.splitlines()[0])
    parser.add_argument("--kafka", action="store_true", help="use the Kafka mock cluster instead of SQS")
    parser.add_argument("--workers", type=int, default=2, help="worker agents to run (default 2)")
    backend = parser.add_mutually_exclusive_group()
    backend.add_argument("--backend", default="test-pattern", metavar="NAME",
                         help="test-pattern (default) or diffusers: the diffusers backend in each agent on the CPU, "
                              "with tiny random-weight pipelines (tiny-sd, tiny-sd-b, tiny-sdxl) unless --model "
                              "names diffusers folders")
    backend.add_argument("--comfyui-url", help="a running ComfyUI (e.g. http://127.0.0.1:8188) instead of test-pattern")
    backend.add_argument("--a1111-url", help="a running A1111 WebUI with --api (e.g. http://127.0.0.1:7860)")
    parser.add_argument("--model", action="append", default=[], metavar="ID=PATH",
                        help="upload a checkpoint to the local model store as model ID (repeatable); the agents "
                             "then fetch it through their model cache and link it into --backend-model-dir. "
                             "With --backend diffusers, PATH is a diffusers folder (model_index.json + components)")
    parser.add_argument("--backend-model-dir", help="the backend's checkpoint folder (ComfyUI models/checkpoints, "
                                                    "A1111 models/Stable-diffusion)")
    parser.add_argument("--api-port", type=int, default=0, help="job API port (default: a free port)")
    parser.add_argument("--cdn-port", type=int, default=0, help="CDN stand-in port (default: a free port)")
    parser.add_argument("--delay", type=float, default=1.0, help="test-pattern seconds per image (default 1.0)")
    parser.add_argument("--max-job-seconds", type=int, default=None,
                        help="the agents' job time limit (default 60; 1800 with --backend diffusers and --model)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run directory (logs, configs) on exit")
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be from 1 to 16")
    if any("=" not in m for m in args.model):
        parser.error("--model takes ID=PATH, e.g. --model sdxl-base-1.0=/models/sd_xl_base_1.0.safetensors")
    return args


def options_of(args: argparse.Namespace) -> LocalOptions:
    """The LocalOptions the command line asks for (checked by LocalPlatform before anything starts)."""
    backend, url = args.backend, None
    if args.comfyui_url:
        backend, url = "comfyui", args.comfyui_url
    elif args.a1111_url:
        backend, url = "a1111", args.a1111_url
    max_job = args.max_job_seconds or (1800 if backend == "diffusers" and args.model else 60)
    return LocalOptions(queue_kind="kafka" if args.kafka else "sqs", workers=args.workers, backend=backend,
                        backend_url=url, api_port=args.api_port, cdn_port=args.cdn_port,
                        test_pattern_delay_seconds=args.delay, keep_run_dir=args.keep_logs,
                        models=dict(m.split("=", 1) for m in args.model), max_job_seconds=max_job,
                        metrics_sink="stdout" if backend == "diffusers" else "off",
                        backend_model_dirs=[args.backend_model_dir] * args.workers if args.backend_model_dir else [])


def curl_example(platform: LocalPlatform) -> str:
    model = next(iter(sorted(platform.models)), "sdxl-base-1.0")
    inputs = {"prompt": "a lighthouse at dusk", "width": 512, "height": 512}
    if any(m.tiny for m in platform.models.values()):  # random weights: noise at any size, so a small one
        inputs.update(width=128, height=128, steps=8)
    # An agent's first diffusers job imports torch and loads the pipeline (18 s for tiny-sdxl on a busy 2-core box);
    # the API waits 25 s at most (API Gateway's limit), after which GET /v1/jobs/{id} tells the rest.
    wait = 25 if platform.options.backend == "diffusers" else 20
    body = json.dumps({"model": model, "inputs": inputs})
    return (f"curl -s -X POST {platform.api_url}/v1/jobs -H 'Authorization: Bearer {platform.api_key}' "
            f"-H 'Content-Type: application/json' -H 'Prefer: wait={wait}' -d '{body}'")


def follow_example(platform: LocalPlatform) -> str:
    """The command that follows a job's events until it ends (issue 38): the client CLI long-polls the events route
    with its cursor; the curl line streams them as Server-Sent Events (local mode only)."""
    env = f"GENAI_FLEET_API_URL={platform.api_url} GENAI_FLEET_API_KEY={platform.api_key}"
    return (f"{env} genai-fleet events <job id>\n"
            f"  or: curl -sN {platform.api_url}/v1/jobs/<job id>/events -H 'Accept: text/event-stream' "
            f"-H 'Authorization: Bearer {platform.api_key}'")


def describe(platform: LocalPlatform) -> str:
    """Where everything is, for the terminal."""
    o, res = platform.options, platform.resources
    queue = (f"Kafka mock cluster {platform.kafka_bootstrap} topic {KAFKA_TOPIC}" if o.queue_kind == "kafka"
             else f"SQS {res.queue_url} (DLQ {res.dlq_url})")
    lines = [
        "genai-fleet local mode is up",
        f"  job API      {platform.api_url}   (API key: {platform.api_key})",
        f"  operator key {platform.operator_key}   (GET {platform.api_url}/v1/fleet)",
        f"  AWS (moto)   {platform.moto_url}   buckets {res.outputs_bucket}, {res.models_bucket}; "
        f"table {res.job_table}",
        f"  queue        {queue}",
        f"  CDN          {platform.cdn.base_url}/outputs/<job id>/<attempt>/image-0.png"
        + ("   (signed links from the job API; 403 otherwise)" if platform.options.output_access == "signed" else ""),
    ]
    if platform.models:
        lines.append(f"  model store  s3://{res.models_bucket}: " + ", ".join(
            f"{m.model_id} ({m.kind}{', tiny, random weights' if m.tiny else ''})"
            for m in sorted(platform.models.values(), key=lambda m: m.model_id)))
    for w in platform.workers:
        backend = o.backend + (f" at {w_url}" if (w_url := _backend_url(platform, w.index)) else "")
        lines.append(f"  {w.name}     pid {w.process.pid}, {w.instance_id}, {backend}, IMDS {w.imds.url}")
    kept = "kept on exit" if o.keep_run_dir else "removed on exit unless --keep-logs"
    lines += [f"  logs         {platform.run_dir}/*.log ({kept})", "", "Try it:", "  " + curl_example(platform), "",
              "Follow a job's progress and status events (its id is in the answer above):",
              "  " + follow_example(platform), "",
              "Spot notice to worker-0:  curl -s -X POST " + (platform.workers[0].imds.url if platform.workers else "")
              + "/_control -d '{\"spot_in_seconds\": 120}'", "", "Ctrl-C stops everything."]
    return "\n".join(lines)


def _backend_url(platform: LocalPlatform, index: int) -> str | None:
    o = platform.options
    if o.backend in IN_PROCESS_BACKENDS:
        return None
    return o.backend_urls[index] if index < len(o.backend_urls) else o.backend_url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:  # bad input (an unknown backend, a folder that is not a diffusers layout) fails before anything starts
        platform = LocalPlatform(options_of(args))
    except (ValueError, LocalModelError) as exc:
        print(f"python -m fleetdev.local: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        platform.start()
        print(describe(platform), flush=True)
        reported: set[str] = set()
        while not stop.wait(1.0):
            if platform.api is not None and not platform.api.alive():
                print(f"stopping: the job API exited (log: {platform.api.log_path})", file=sys.stderr)
                return 1
            for w in platform.workers:
                if not w.process.alive() and w.name not in reported:  # e.g. drained after a spot notice
                    reported.add(w.name)
                    print(f"{w.name} exited with code {w.process.proc.returncode} (log: {w.process.log_path})",
                          file=sys.stderr, flush=True)
        print("\nstopping local mode ...", file=sys.stderr, flush=True)
        return 0
    finally:
        platform.stop()
        print("local mode stopped" + (f"; logs kept in {platform.run_dir}" if args.keep_logs else ""),
              file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
