"""Upload a model's files to the store (multipart, parallel parts) and register it in the manifest.

``plan`` hashes the local files and works out their keys; ``upload`` sends each file with boto3's
transfer manager (parts of ``part_size`` bytes, ``concurrency`` at once), stores the sha256 in the
object metadata, skips files already present with the same size and hash, and then registers the
entry. Progress is reported through a small callback interface so the CLI can print it.
"""

from __future__ import annotations

import hashlib
import logging
import mimetypes
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from runtime.model_store.errors import LayoutError, StorageError
from runtime.model_store.layout import artifact_key, validate_kind, validate_model_id, validate_version
from runtime.model_store.manifest import ManifestStore, ModelEntry, ModelFile, utc_now
from runtime.model_store.video_kinds import check_contents

log = logging.getLogger(__name__)
MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (except the last)
MAX_PARTS = 10_000  # S3's most parts per upload
_HASH_CHUNK = 8 * MiB


class Progress(Protocol):
    """What the uploader reports; called from the transfer threads."""

    def start(self, path: str, size: int) -> None: ...
    def advance(self, path: str, nbytes: int) -> None: ...
    def finish(self, path: str, skipped: bool) -> None: ...


class _Silent:
    def start(self, path: str, size: int) -> None:
        pass

    def advance(self, path: str, nbytes: int) -> None:
        pass

    def finish(self, path: str, skipped: bool) -> None:
        pass


@dataclass(frozen=True)
class PlannedFile:
    local: Path
    file: ModelFile


@dataclass(frozen=True)
class UploadPlan:
    model_id: str
    kind: str
    version: str
    files: tuple[PlannedFile, ...]

    @property
    def total_size(self) -> int:
        return sum(p.file.size for p in self.files)


def sha256_file(path: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as fh:
        while chunk := fh.read(_HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _collect(paths: Iterable[str | os.PathLike[str]]) -> list[tuple[Path, str]]:
    """(local file, path inside the model): files keep their name, directories their relative layout."""
    found: list[tuple[Path, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.extend((f, f.relative_to(p).as_posix()) for f in sorted(p.rglob("*")) if f.is_file())
        elif p.is_file():
            found.append((p, p.name))
        else:
            raise LayoutError(f"{p}: no such file or directory")
    names = [rel for _, rel in found]
    if not found:
        raise LayoutError("nothing to upload: give at least one file or a non-empty directory")
    if len(set(names)) != len(names):
        raise LayoutError(f"two inputs would land on the same path inside the model: {sorted(names)}")
    return found


def plan(model_id: str, kind: str, paths: Iterable[str | os.PathLike[str]], version: str | None = None) -> UploadPlan:
    """Hash the inputs and decide the version (content hash unless given) and every key."""
    validate_model_id(model_id)
    validate_kind(kind)
    collected = _collect(paths)
    check_contents(kind, collected)  # a video model or motion adapter of the wrong shape is refused before hashing
    hashed = [(local, rel, *sha256_file(local)) for local, rel in collected]
    if version is None:
        combined = hashlib.sha256("".join(f"{rel}\0{sha}\n" for _, rel, _, sha in sorted(
            hashed, key=lambda h: h[1])).encode())
        version = (hashed[0][3] if len(hashed) == 1 else combined.hexdigest())[:16]
    validate_version(version)
    files = tuple(PlannedFile(local=local, file=ModelFile(path=rel, key=artifact_key(kind, model_id, version, rel),
                                                          size=size, sha256=sha))
                  for local, rel, size, sha in hashed)
    return UploadPlan(model_id=model_id, kind=kind, version=version, files=files)


def transfer_config(size: int, part_size: int, concurrency: int) -> TransferConfig:
    """Parts of ``part_size`` (raised when the file would need more than 10,000), ``concurrency`` threads."""
    part = max(part_size, MIN_PART_SIZE, -(-size // MAX_PARTS))
    return TransferConfig(multipart_threshold=part, multipart_chunksize=part, max_concurrency=concurrency,
                          use_threads=True, preferred_transfer_client="classic")


def upload(s3_client: Any, bucket: str, upload_plan: UploadPlan, *, part_size: int = 64 * MiB,
           concurrency: int = 8, progress: Progress | None = None, manifest_key: str | None = None,
           source: str | None = None, family: str | None = None) -> ModelEntry:
    """Upload every planned file (skipping identical ones already there) and register the model."""
    progress = progress or _Silent()
    for planned in upload_plan.files:
        _upload_one(s3_client, bucket, planned, part_size, concurrency, progress)
    entry = ModelEntry(model_id=upload_plan.model_id, kind=upload_plan.kind, version=upload_plan.version,
                       files=tuple(p.file for p in upload_plan.files), uploaded_at=utc_now(), source=source,
                       family=family)
    store = ManifestStore(s3_client, bucket, **({"key": manifest_key} if manifest_key else {}))
    store.register(entry)
    log.info("registered %s version %s (%d files, %d bytes)", entry.model_id, entry.version, len(entry.files),
             entry.total_size)
    return entry


def _already_there(s3_client: Any, bucket: str, f: ModelFile) -> bool:
    try:
        head = s3_client.head_object(Bucket=bucket, Key=f.key)
    except ClientError as exc:
        if str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise StorageError(f"checking s3://{bucket}/{f.key} failed: {exc}") from exc
    return head.get("ContentLength") == f.size and head.get("Metadata", {}).get("sha256") == f.sha256


def _upload_one(s3_client: Any, bucket: str, planned: PlannedFile, part_size: int, concurrency: int,
                progress: Progress) -> None:
    f = planned.file
    progress.start(f.path, f.size)
    if _already_there(s3_client, bucket, f):
        progress.finish(f.path, skipped=True)
        return
    content_type = mimetypes.guess_type(f.path)[0] or "application/octet-stream"
    lock = threading.Lock()

    def on_bytes(n: int) -> None:
        with lock:
            progress.advance(f.path, n)

    try:
        s3_client.upload_file(str(planned.local), bucket, f.key,
                              ExtraArgs={"Metadata": {"sha256": f.sha256}, "ContentType": content_type},
                              Config=transfer_config(f.size, part_size, concurrency), Callback=on_bytes)
    except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
        raise StorageError(f"uploading {planned.local} to s3://{bucket}/{f.key} failed: {exc}") from exc
    progress.finish(f.path, skipped=False)
