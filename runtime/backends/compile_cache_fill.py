"""Fill the fleet's torch.compile cache for one model architecture on this machine's GPU.

Workers never pay a cold compile at boot (``diffusers.cold_compile: skip``: one SDXL bucket with
max-autotune had not compiled after 480 s on an H100, longer than the launching lifecycle hook waits);
they restore a compiled cache from a store and serve the eager UNet until one exists. This fills it:
run it once per (architecture, GPU type, torch / diffusers versions, buckets, compile mode) on an
instance of the fleet's GPU type, with credentials that may write the store (workers may only read
the model store). Every worker whose agent has a model store reads ``s3://<store>/compile-cache/``.
It ships in the runtime (the AMI's agent venv has diffusers and torch), as ``genai-compile-cache``:

    genai-compile-cache --model /var/cache/genai-fleet/models/sdxl-base \\
        --store s3://MODEL_STORE_BUCKET/compile-cache [--buckets 1024x1024,832x1216] [--mode max-autotune]

Exits non-zero unless the compiled cache was written and reads back from the store.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runtime.backends.diffusers_options import COMPILE_MODES, DiffusersOptions, OptionsError


def fill(model: Path, store: str, *, buckets: list[str] | None, batch_sizes: list[int], mode: str, device: str,
         region: str | None = None, endpoint_url: str | None = None) -> dict[str, Any]:
    """Compile every bucket x batch size of ``model`` and save the cache to ``store``; the warm-up report."""
    from runtime.backends.diffusers import DiffusersBackend

    with tempfile.TemporaryDirectory(prefix="compile-cache-") as work:
        options = DiffusersOptions.from_mapping({
            "compile": "on", "cold_compile": "compile", "compile_mode": mode, "batch_sizes": batch_sizes,
            "max_batch": max(batch_sizes), "compile_cache_dir": work, "compile_cache_stores": [store],
            "host_ram_gib": 0, **({"buckets": buckets} if buckets else {})})
        # The backend reads region / endpoints like the agent's config; no model store of its own here.
        config = SimpleNamespace(region=region, endpoints={"s3": endpoint_url} if endpoint_url else {},
                                 model_cache=None)
        backend = DiffusersBackend(config, device=device, options=options)
        report = backend.warm_up("model", model)
        cache = backend._compile_cache
        slug = cache.active.slug if cache is not None and cache.active is not None else None
        report["slug"] = slug
        report["stored"] = bool(slug) and cache.stores[0].get(slug) is not None
        backend.close()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a diffusers model folder (as the cache holds it)")
    parser.add_argument("--store", required=True, help="s3://BUCKET/PREFIX or a folder (e.g. the AMI's)")
    parser.add_argument("--buckets", type=lambda s: s.split(","), default=None,
                        help="WIDTHxHEIGHT,...; default: the model family's (the workers' default)")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1])
    parser.add_argument("--mode", default="max-autotune", choices=COMPILE_MODES)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--region")
    parser.add_argument("--endpoint-url", help="S3 endpoint (tests, local mode)")
    args = parser.parse_args(argv)
    if not (args.model / "model_index.json").is_file():
        parser.error(f"--model {args.model}: no model_index.json there; give a diffusers model folder")
    try:
        report = fill(args.model, args.store, buckets=args.buckets, batch_sizes=args.batch_sizes, mode=args.mode,
                      device=args.device, region=args.region, endpoint_url=args.endpoint_url)
    except (OptionsError, ValueError) as exc:
        parser.error(str(exc))
    print(json.dumps(report, indent=2))
    if not report["compiled"] or not report["stored"]:
        print(f"compile cache NOT stored in {args.store} (see the warnings above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
