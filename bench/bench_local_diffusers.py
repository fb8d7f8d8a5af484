"""Benchmark: local mode with the diffusers backend (tiny pipeline, CPU): platform overhead per job beside the
backend's own time, measured in the same run.

The backend's own time is ``DiffusersBackend.run`` called directly in this process on the same tiny
pipeline (bench/diffusers_models.py, the one local mode serves), same size, steps and seed, with as many
torch threads as the agent gets; half of those runs before local mode starts and half after it stops, so
a change of load during the run shows in both. The platform's time is a sync job (``Prefer: wait=30``)
submitted to local mode with one agent (API, SQS, agent, model cache, diffusers backend, S3, CDN URL),
client-observed submit to final answer; the agent's own ``inference_ms`` and ``total_ms`` are read from
each job's timings. Everything runs on loopback with moto standing in for AWS, so the overhead includes
moto's cost; it is not a prediction of latency on AWS. Figures are printed and written as JSON (``--out``),
never asserted. About a minute on a loaded 2-core machine.

    .venv/bin/python bench/bench_local_diffusers.py [--jobs 10] [--size 64] [--steps 4] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MODEL = "tiny-sd"


def _p50(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def bare_backend_ms(folder: Path, size: int, steps: int, runs: int) -> list[float]:
    """The backend's own time: DiffusersBackend.run on the tiny pipeline, after one warm-up run."""
    from runtime.backends.base import JobContext
    from runtime.backends.diffusers import DiffusersBackend
    from runtime.backends.diffusers_options import DiffusersOptions
    from runtime.jobs.schema import JobSpec

    backend = DiffusersBackend(device="cpu", options=DiffusersOptions(device="cpu", compile="off", host_ram_gib=0))
    backend.load_model(MODEL, folder)
    out = []
    for i in range(runs + 1):
        spec = {"model": MODEL, "inputs": {"prompt": f"bench {i}", "width": size, "height": size, "steps": steps,
                                           "seed": i}}
        t = time.perf_counter()
        backend.run(JobContext(f"j_bare{i}", JobSpec.parse(spec)))
        if i:  # the first run loads the pipeline
            out.append((time.perf_counter() - t) * 1000)
    backend.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10, help="sequential sync jobs through local mode")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--out", help="write the figures as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import torch

    from bench.diffusers_models import tiny
    from fleetdev.local.platform import LocalOptions, LocalPlatform

    with tempfile.TemporaryDirectory(prefix="bench-local-diffusers-") as tmp:
        folder = tiny("sd15", Path(tmp) / MODEL, seed=0)
        options = LocalOptions(backend="diffusers", workers=1, models={MODEL: str(folder)}, versioned_outputs=False)
        platform = LocalPlatform(options)
        threads = int(platform.worker_env().get("OMP_NUM_THREADS", os.cpu_count() or 1))
        torch.set_num_threads(threads)  # the agent's share of the cores, for a like-for-like backend time
        half = max(3, args.jobs // 2)
        bare = bare_backend_ms(folder, args.size, args.steps, half)
        latencies, inference, agent = [], [], []
        with platform:
            ledger = platform.ledger
            inputs = {"steps": args.steps}
            warm = ledger.submit(prompt="warm-up", width=args.size, height=args.size, seed=0, wait=30, model=MODEL,
                                 inputs=inputs)
            if warm["status"] != "succeeded":
                raise SystemExit(f"warm-up job ended {warm['status']}: {warm.get('error')}")
            for i in range(args.jobs):
                t = time.perf_counter()
                view = ledger.submit(prompt=f"bench {i}", width=args.size, height=args.size, seed=i, wait=30,
                                     model=MODEL, inputs=inputs)
                latencies.append((time.perf_counter() - t) * 1000)
                if view["status"] != "succeeded":
                    raise SystemExit(f"job {view['id']} ended {view['status']}: {view.get('error')}")
                inference.append(view["timings"]["inference_ms"])
                agent.append(view["timings"]["total_ms"])
        bare += bare_backend_ms(folder, args.size, args.steps, half)
    bare_p50 = _p50(bare)
    figures: list[dict[str, Any]] = [
        {"metric": "sync job, submit to answer, p50", "value": _p50(latencies), "unit": "ms",
         "baseline_metric": "backend alone (DiffusersBackend.run) p50", "baseline_value": bare_p50},
        {"metric": "platform overhead per job, p50 (submit to answer - backend alone)",
         "value": round(_p50(latencies) - bare_p50, 1), "unit": "ms"},
        {"metric": "backend time inside the agent (inference_ms), p50", "value": _p50(inference), "unit": "ms",
         "baseline_metric": "backend alone p50", "baseline_value": bare_p50},
        {"metric": "agent time per job (pick-up to final, total_ms), p50", "value": _p50(agent), "unit": "ms",
         "baseline_metric": "backend alone p50", "baseline_value": bare_p50},
    ]
    result = {"name": "local_diffusers", "jobs": args.jobs, "workers": 1, "figures": figures,
              "settings": {"size": args.size, "steps": args.steps, "torch_threads": threads},
              "note": f"local mode, diffusers backend on the CPU (tiny SD pipeline, {args.size}x{args.size}, "
                      f"{args.steps} steps, {threads} torch thread(s)); loopback with moto, not a prediction of AWS"}
    for f in figures:
        base = f" (baseline {f['baseline_metric']}: {f['baseline_value']})" if "baseline_value" in f else ""
        print(f"{f['metric']}: {f['value']} {f['unit']}{base}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
