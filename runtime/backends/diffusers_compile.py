"""Persistent torch.compile cache: Inductor's and Triton's on-disk caches, saved and restored per key.

A first compile of the SDXL UNet takes minutes on an H200 (315 s measured, issue 19); a new instance must
not pay it. Inductor already caches compiled graphs on disk (FX graph cache, autotuning results, Triton
kernels) under ``TORCHINDUCTOR_CACHE_DIR`` / ``TRITON_CACHE_DIR``; this module points both at a working
folder per key and copies that folder to and from *stores* (a folder baked into the AMI, a local disk, or
anything with the small ``CacheStore`` protocol) as one tar archive. The key names what the compiled code
depends on: the model's architecture (its component configs: two fine-tunes of SDXL share one cache, since
weights are graph inputs, not constants), the shape buckets and batch sizes, the GPU, the compile mode and
the torch / diffusers versions. A mismatch of any of them is a different key, never a wrong kernel.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tarfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CompileKey:
    architecture: str  # digest of the pipeline's component configs (diffusers_ram.architecture)
    buckets: str  # e.g. "1024x1024,896x1152;b1,2"
    gpu: str  # torch.cuda.get_device_name(), or "cpu"
    mode: str  # torch.compile mode
    torch: str
    diffusers: str

    @property
    def slug(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        gpu = "".join(c if c.isalnum() else "-" for c in self.gpu.lower()).strip("-")[:40]
        return f"{gpu}-torch{self.torch.split('+')[0]}-{digest}"


class CacheStore(Protocol):
    """Where compiled caches are kept between processes and instances."""

    def get(self, slug: str) -> bytes | None: ...

    def put(self, slug: str, archive: bytes) -> None: ...


class DirectoryStore:
    """A folder of ``<slug>.tar`` archives: the AMI's baked-in cache, or a local persistent disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def get(self, slug: str) -> bytes | None:
        path = self.root / f"{slug}.tar"
        return path.read_bytes() if path.is_file() else None

    def put(self, slug: str, archive: bytes) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{slug}.tar.{os.getpid()}"
        tmp.write_bytes(archive)
        tmp.replace(self.root / f"{slug}.tar")  # atomic: a reader never sees half an archive


class S3Store:
    """``s3://bucket/prefix/<slug>.tar``: the fleet's shared cache, next to the models in the model store.

    Workers may read the model store, not write it (least privilege): one run with ``cold_compile: compile``
    on the fleet's GPU type, with credentials that may write there (``tools/compile_cache.py``), fills the
    key for every instance after it. A store that cannot be read is a miss, never a failed boot.
    """

    def __init__(self, client: object, bucket: str, prefix: str = "compile-cache") -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    @classmethod
    def from_url(cls, url: str, client: object) -> S3Store:
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not url.startswith("s3://") or not bucket:
            raise ValueError(f"compile cache store {url!r}: expected s3://BUCKET/PREFIX")
        return cls(client, bucket, prefix or "compile-cache")

    def _key(self, slug: str) -> str:
        return f"{self.prefix}/{slug}.tar" if self.prefix else f"{slug}.tar"

    def get(self, slug: str) -> bytes | None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(slug))["Body"].read()
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                log.warning("compile cache s3://%s/%s not read: %s", self.bucket, self._key(slug), exc)
            return None
        except BotoCoreError as exc:
            log.warning("compile cache s3://%s/%s not read: %s", self.bucket, self._key(slug), exc)
            return None

    def put(self, slug: str, archive: bytes) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(slug), Body=archive,
                                   ContentType="application/x-tar")
        except (ClientError, BotoCoreError) as exc:  # a worker may not write the model store: by design
            raise OSError(f"s3://{self.bucket}/{self._key(slug)}: {exc}") from exc


def _pack(folder: Path) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buf.getvalue()


def _unpack(archive: bytes, folder: Path) -> int:
    with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        tar.extractall(folder, members=members, filter="data")  # "data": no absolute paths, links or '..'
    return len(members)


class CompileCache:
    """Activates the working cache folder of a key; restores it from, and saves it to, the stores."""

    def __init__(self, work_root: str | Path, stores: list[CacheStore]) -> None:
        self.work_root = Path(work_root)
        self.stores = stores
        self.active: CompileKey | None = None

    def folder(self, key: CompileKey) -> Path:
        return self.work_root / key.slug

    def activate(self, key: CompileKey) -> bool:
        """Point Inductor and Triton at this key's folder, restoring it from a store first.

        Returns True when compiled artefacts were found (locally or in a store): the compile will be warm.
        """
        folder = self.folder(key)
        warm = any(folder.rglob("*")) if folder.is_dir() else False
        if not warm:
            for store in self.stores:
                archive = store.get(key.slug)
                if archive:
                    files = _unpack(archive, folder)
                    log.info("compile cache %s restored from %s (%d files)", key.slug, type(store).__name__, files)
                    warm = files > 0
                    break
        (folder / "inductor").mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder / "inductor")
        os.environ["TRITON_CACHE_DIR"] = str(folder / "triton")
        self.active = key
        return warm

    def save(self, key: CompileKey | None = None) -> int:
        """Archive the key's folder into every writable store; returns the archive's size in bytes."""
        key = key or self.active
        if key is None:
            return 0
        archive = _pack(self.folder(key))
        for store in self.stores:
            try:
                store.put(key.slug, archive)
            except OSError as exc:  # a read-only AMI folder: the next store may take it
                log.warning("compile cache %s not saved to %s: %s", key.slug, type(store).__name__, exc)
        return len(archive)
