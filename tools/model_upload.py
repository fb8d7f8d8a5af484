"""Upload a model to the model store and register it in the manifest.

    python tools/model_upload.py --bucket "$(pulumi stack output modelStoreBucket)" \\
        --model-id sdxl/sdxl-turbo --kind checkpoint ./sd_xl_turbo_1.0_fp16.safetensors

Files go up as S3 multipart uploads with parts sent in parallel (``--part-size-mib``,
``--concurrency``); progress goes to stderr; the registered manifest entry is printed to stdout as
JSON. ``--endpoint-url`` points the same code at a local S3 (moto) for tests. Key layout and manifest:
docs/model-store.md. Exit status: 0 registered, 1 upload or manifest failure, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any, TextIO

from runtime.model_store import KINDS, MANIFEST_KEY, LayoutError, ModelStoreError
from runtime.model_store import upload as uploader
from runtime.model_store.manifest import FAMILY

ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger("model_upload")
MiB = 1024 * 1024


class ProgressPrinter:
    """Line-based progress on a stream (works in CI logs): at most one line per interval, plus the last."""

    def __init__(self, stream: TextIO, interval: float = 1.0, clock=time.monotonic):
        self._stream, self._interval, self._clock = stream, interval, clock
        self._lock = threading.Lock()
        self._size = self._done = 0
        self._started = self._last = 0.0

    def start(self, path: str, size: int) -> None:
        with self._lock:
            self._size, self._done = size, 0
            self._started = self._last = self._clock()
        self._print(f"{path}: {size / MiB:.1f} MiB")

    def advance(self, path: str, nbytes: int) -> None:
        with self._lock:
            self._done += nbytes
            now = self._clock()
            if now - self._last < self._interval:
                return
            self._last = now
            line = self._line(path, now)
        self._print(line)

    def finish(self, path: str, skipped: bool) -> None:
        with self._lock:
            line = (f"{path}: already uploaded with the same sha256, skipped" if skipped
                    else self._line(path, self._clock()) + " done")
        self._print(line)

    def _line(self, path: str, now: float) -> str:
        pct = 100.0 * self._done / self._size if self._size else 100.0
        rate = self._done / MiB / max(now - self._started, 1e-6)
        return f"{path}: {pct:5.1f}% ({self._done / MiB:.1f}/{self._size / MiB:.1f} MiB, {rate:.1f} MiB/s)"

    def _print(self, line: str) -> None:
        print(line, file=self._stream, flush=True)


def make_s3_client(endpoint_url: str | None, region: str | None, concurrency: int) -> Any:
    """An S3 client whose connection pool fits the parallel parts."""
    import boto3
    from botocore.config import Config

    session = boto3.session.Session(region_name=region)
    return session.client("s3", endpoint_url=endpoint_url,
                          config=Config(max_pool_connections=max(10, concurrency + 2),
                                        retries={"max_attempts": 5, "mode": "standard"}))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="model_upload", description=__doc__.splitlines()[0])
    p.add_argument("paths", nargs="+", help="files, or a directory (uploaded with its relative layout)")
    p.add_argument("--bucket", required=True, help="model store bucket (stack output of the ModelStore)")
    p.add_argument("--model-id", required=True, help="lowercase 'name' or 'family/name', e.g. sdxl/sdxl-turbo")
    p.add_argument("--kind", required=True, choices=sorted(KINDS), help="what the model is; picks its folder")
    p.add_argument("--version", help="version label; default: first 16 hex digits of the content sha256")
    p.add_argument("--source", help="where the model came from (URL), recorded in the manifest")
    p.add_argument("--family", help="the base family a LoRA applies to (e.g. sdxl), recorded in the manifest; "
                                    "default: the model id's 'family/' prefix")
    p.add_argument("--manifest-key", default=MANIFEST_KEY, help=f"manifest object key (default {MANIFEST_KEY})")
    p.add_argument("--part-size-mib", type=int, default=64, help="multipart part size in MiB (min 5; default 64)")
    p.add_argument("--concurrency", type=int, default=8, help="parts uploaded at once (default 8)")
    p.add_argument("--endpoint-url", help="S3 endpoint (local S3 such as moto for tests)")
    p.add_argument("--region", help="AWS region (default: from the environment)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = p.parse_args(argv)
    if args.part_size_mib < 5:
        p.error("--part-size-mib must be at least 5 (S3's smallest part)")
    if not 1 <= args.concurrency <= 64:
        p.error("--concurrency must be from 1 to 64")
    if args.family is not None and not FAMILY.match(args.family):
        p.error(f"--family {args.family!r}: must be like a model id's first part (lowercase letters, digits, "
                "'.', '_', '-'; e.g. sdxl)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        plan = uploader.plan(args.model_id, args.kind, args.paths, version=args.version)
    except LayoutError as exc:
        print(f"model_upload: {exc}", file=sys.stderr)
        return 2
    progress = None if args.quiet else ProgressPrinter(sys.stderr)
    client = make_s3_client(args.endpoint_url, args.region, args.concurrency)
    started = time.monotonic()
    try:
        entry = uploader.upload(client, args.bucket, plan, part_size=args.part_size_mib * MiB,
                                concurrency=args.concurrency, progress=progress, manifest_key=args.manifest_key,
                                source=args.source, family=args.family)
    except ModelStoreError as exc:
        print(f"model_upload: {exc}", file=sys.stderr)
        return 1
    if not args.quiet:
        print(f"registered {entry.model_id} version {entry.version} in s3://{args.bucket}/{args.manifest_key} "
              f"({entry.total_size / MiB:.1f} MiB in {time.monotonic() - started:.1f} s)", file=sys.stderr)
    print(json.dumps({"model_id": entry.model_id, **entry.to_dict()}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
